/* Layer norm in the fixed order (the definition below), per ISA. */
#include "fx.h"

/* ---------------------------------------------------------------- layer norm (fixed order)
 *
 * Y[i, :] = LN(X[i, :]) * w + b over N features, defined lane by lane so that 16-wide (AVX-512),
 * 2 x 8-wide (AVX2) and scalar code compute the same chains:
 *   s[l] = +0; s[l] = s[l] + x[j] for j = l, l + 16, l + 32, ... < N, in order   (l = 0..15)
 *   tree: s[l] = s[l] + s[l + h] for h = 8, 4, 2, 1 and l < h;   mean = s[0] / N
 *   q[l] likewise of fmaf(d, d, q[l]) with d = x[j] - mean;      var = q[0] / N
 *   rstd = 1 / sqrtf(var + eps);   y[j] = ((x[j] - mean) * rstd) * w[j] + b[j]   (no fused step)
 * Two passes (mean, then squared deviations): no cancellation as in E[x^2] - mean^2. Rows are
 * independent, so the bits do not depend on the row's position, the batch or the thread count. */

void fx_ln_row_scalar(int N, const float *x, const float *w, const float *b, float eps, float *y) {
    float s[16] = {0}, q[16] = {0};
    for (int j = 0; j < N; j++) s[j % 16] = s[j % 16] + x[j];
    float mean = fx_tree16(s) / (float)N;
    for (int j = 0; j < N; j++) {
        float d = x[j] - mean;
        q[j % 16] = fmaf(d, d, q[j % 16]);
    }
    float rstd = 1.0f / sqrtf(fx_tree16(q) / (float)N + eps);
    for (int j = 0; j < N; j++) y[j] = ((x[j] - mean) * rstd) * w[j] + b[j];
}

/* The tail (N % 16 features) of a vector row: lanes l < N - j0 take one more element, scalar. */
static float fx_ln_tail_sum(int N, int j0, const float *x, float *s) {
    for (int j = j0; j < N; j++) s[j - j0] = s[j - j0] + x[j];
    return fx_tree16(s);
}

static float fx_ln_tail_sq(int N, int j0, const float *x, float mean, float *q) {
    for (int j = j0; j < N; j++) {
        float d = x[j] - mean;
        q[j - j0] = fmaf(d, d, q[j - j0]);
    }
    return fx_tree16(q);
}

#if FX_X86
__attribute__((target("avx512f"))) void fx_ln_row_avx512(int N, const float *x, const float *w, const float *b,
                                                          float eps, float *y) {
    int full = N / 16 * 16;
    __m512 s = _mm512_setzero_ps(), q = _mm512_setzero_ps();
    for (int j = 0; j < full; j += 16) s = _mm512_add_ps(s, _mm512_loadu_ps(x + j));
    float t[16];
    _mm512_storeu_ps(t, s);
    float mean = fx_ln_tail_sum(N, full, x, t) / (float)N;
    __m512 m = _mm512_set1_ps(mean);
    for (int j = 0; j < full; j += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + j), m);
        q = _mm512_fmadd_ps(d, d, q);
    }
    _mm512_storeu_ps(t, q);
    float rstd = 1.0f / sqrtf(fx_ln_tail_sq(N, full, x, mean, t) / (float)N + eps);
    __m512 r = _mm512_set1_ps(rstd);
    for (int j = 0; j < full; j += 16) {
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), m), r), _mm512_loadu_ps(w + j));
        _mm512_storeu_ps(y + j, _mm512_add_ps(v, _mm512_loadu_ps(b + j)));
    }
    for (int j = full; j < N; j++) y[j] = ((x[j] - mean) * rstd) * w[j] + b[j];
}

__attribute__((target("avx2,fma"))) void fx_ln_row_avx2(int N, const float *x, const float *w, const float *b,
                                                         float eps, float *y) {
    int full = N / 16 * 16;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
    for (int j = 0; j < full; j += 16) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + j));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + j + 8));
    }
    float t[16];
    _mm256_storeu_ps(t, s0);
    _mm256_storeu_ps(t + 8, s1);
    float mean = fx_ln_tail_sum(N, full, x, t) / (float)N;
    __m256 m = _mm256_set1_ps(mean);
    for (int j = 0; j < full; j += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + j), m), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8), m);
        q0 = _mm256_fmadd_ps(d0, d0, q0);
        q1 = _mm256_fmadd_ps(d1, d1, q1);
    }
    _mm256_storeu_ps(t, q0);
    _mm256_storeu_ps(t + 8, q1);
    float rstd = 1.0f / sqrtf(fx_ln_tail_sq(N, full, x, mean, t) / (float)N + eps);
    __m256 r = _mm256_set1_ps(rstd);
    for (int j = 0; j < full / 8 * 8; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), m), r), _mm256_loadu_ps(w + j));
        _mm256_storeu_ps(y + j, _mm256_add_ps(v, _mm256_loadu_ps(b + j)));
    }
    for (int j = full; j < N; j++) y[j] = ((x[j] - mean) * rstd) * w[j] + b[j];
}
#endif

/* Rows i0..i1-1 of X normalised into Y on this ISA (Y may be X). */
void fx_ln_rows(const fx_ops *ops, int i0, int i1, int N, const float *X, long ldx, const float *w, const float *b,
                float eps, float *Y, long ldy) {
    for (int i = i0; i < i1; i++) ops->ln_row(N, X + (long)i * ldx, w, b, eps, Y + (long)i * ldy);
}

/* Layer norm of M rows (see above) on this CPU's path; rows shared out among `threads` (Y may be X). */
int fx_layernorm(int M, int N, const float *X, long ldx, const float *w, const float *b, float eps, float *Y,
                 long ldy, int threads) {
    if (M <= 0 || N <= 0) return 0;
    const fx_ops *ops = fx_ops_in_use();
    int blocks = (M + 31) / 32, parallel = threads > 1 && blocks >= 2 * threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
#else
    (void)parallel;
#endif
    for (int blk = 0; blk < blocks; blk++) {
        int i0 = blk * 32, i1 = i0 + 32 < M ? i0 + 32 : M;
        fx_ln_rows(ops, i0, i1, N, X, ldx, w, b, eps, Y, ldy);
    }
    return 0;
}

/* The definition, one row at a time in scalar code (what the vector paths are checked against). */
void fx_layernorm_scalar(int M, int N, const float *X, long ldx, const float *w, const float *b, float eps,
                         float *Y, long ldy) {
    for (int i = 0; i < M; i++) fx_ln_row_scalar(N, X + (long)i * ldx, w, b, eps, Y + (long)i * ldy);
}
