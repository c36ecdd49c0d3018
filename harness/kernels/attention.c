/* Attention in the fixed order: scores, scale and mask, softmax (with fx.h's exp), weighted sums. */
#include "fx.h"

/* ---------------------------------------------------------------- attention (fixed order)
 *
 * For each item (a window's head): S = Q K^T (each score the defining fmaf chain over d), then
 * s = (s * scale) + mask (two roundings, as torch's mul_ and add_), then the softmax of each row,
 * defined lane by lane like the layer norm:
 *   m = max_j s_j;  e_j = fx_exp(s_j - m);  sum: 16 lane sums e[j % 16] in order, tree 8, 4, 2, 1;
 *   w_j = e_j / sum
 * and O = W V (each element the chain over all t keys in order; masked keys weigh exactly +0).
 * fx_exp is fx.h's (x <= 0 here). Every step is one IEEE operation, the same in AVX-512, AVX2 and
 * scalar code: the bits do not depend on the CPU, and a row's bits not on its batch (items are
 * independent). */

/* One row of scores in place: scale, mask (NULL: none), softmax (the definition above). */
void fx_softmax_row_scalar(int N, float *s, float scale, const float *mask) {
    float m = -INFINITY, sum[16] = {0};
    for (int j = 0; j < N; j++) {
        float v = s[j] * scale;
        if (mask) v = v + mask[j];
        s[j] = v;
        m = v > m ? v : m;
    }
    for (int j = 0; j < N; j++) {
        s[j] = fx_exp_scalar(s[j] - m);
        sum[j % 16] = sum[j % 16] + s[j];
    }
    float total = fx_tree16(sum);
    for (int j = 0; j < N; j++) s[j] = s[j] / total;
}

#if FX_X86
__attribute__((target("avx512f"))) void fx_softmax_row_avx512(int N, float *s, float scale, const float *mask) {
    /* 16 lanes; the tail's lanes masked (a masked-off lane is left as it is: its sum gets nothing) */
    __m512 sc = _mm512_set1_ps(scale), mv = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < N; j += 16) {
        __mmask16 k = N - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - j)) - 1u);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), sc);
        if (mask) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, mask + j));
        _mm512_mask_storeu_ps(s + j, k, v);
        mv = _mm512_mask_max_ps(mv, k, mv, v);
    }
    float lanes[16], m = -INFINITY;
    _mm512_storeu_ps(lanes, mv);
    for (int l = 0; l < 16; l++) m = lanes[l] > m ? lanes[l] : m;
    __m512 mm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
    for (int j = 0; j < N; j += 16) {
        __mmask16 k = N - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - j)) - 1u);
        __m512 e = fx_exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), mm));
        _mm512_mask_storeu_ps(s + j, k, e);
        acc = _mm512_mask_add_ps(acc, k, acc, e);
    }
    _mm512_storeu_ps(lanes, acc);
    __m512 total = _mm512_set1_ps(fx_tree16(lanes));
    for (int j = 0; j < N; j += 16) {
        __mmask16 k = N - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - j)) - 1u);
        _mm512_mask_storeu_ps(s + j, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, s + j), total));
    }
}

__attribute__((target("avx2,fma"))) void fx_softmax_row_avx2(int N, float *s, float scale, const float *mask) {
    /* 16 lanes as two halves of 8 (lanes 0-7: features j..j+7, lanes 8-15: j+8..j+15); tails masked */
    __m256 sc = _mm256_set1_ps(scale), mh[2] = {_mm256_set1_ps(-INFINITY), _mm256_set1_ps(-INFINITY)};
    for (int j = 0; j < N; j += 8) {
        __m256i k = fx_tail8(N - j);
        __m256 kf = _mm256_castsi256_ps(k);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(s + j, k), sc);
        if (mask) v = _mm256_add_ps(v, _mm256_maskload_ps(mask + j, k));
        _mm256_maskstore_ps(s + j, k, v);
        int h = (j / 8) & 1;
        mh[h] = _mm256_blendv_ps(mh[h], _mm256_max_ps(mh[h], v), kf);
    }
    float lanes[16], m = -INFINITY;
    _mm256_storeu_ps(lanes, mh[0]);
    _mm256_storeu_ps(lanes + 8, mh[1]);
    for (int l = 0; l < 16; l++) m = lanes[l] > m ? lanes[l] : m;
    __m256 mm = _mm256_set1_ps(m), acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int j = 0; j < N; j += 8) {
        __m256i k = fx_tail8(N - j);
        __m256 e = fx_exp_avx2(_mm256_sub_ps(_mm256_maskload_ps(s + j, k), mm));
        _mm256_maskstore_ps(s + j, k, e);
        int h = (j / 8) & 1;
        acc[h] = _mm256_blendv_ps(acc[h], _mm256_add_ps(acc[h], e), _mm256_castsi256_ps(k));
    }
    _mm256_storeu_ps(lanes, acc[0]);
    _mm256_storeu_ps(lanes + 8, acc[1]);
    __m256 total = _mm256_set1_ps(fx_tree16(lanes));
    for (int j = 0; j < N; j += 8) {
        __m256i k = fx_tail8(N - j);
        _mm256_maskstore_ps(s + j, k, _mm256_div_ps(_mm256_maskload_ps(s + j, k), total));
    }
}
#endif

/* Attention of `items` (window, head) pairs, item u = (u / heads, u % heads):
 *   Q rows i < T_q: q + (u / heads) * sq0 + (u % heads) * sq1 + i * ldq   (D floats each)
 *   K, V rows j < T: likewise with sk0, sk1, ldk / sv0, sv1, ldv
 *   mask (NULL: none): row i of window w at mask + w * sm0 + i * ldm (T floats; heads share it)
 *   O rows: o + (u / heads) * so0 + (u % heads) * so1 + i * ldo
 * O = softmax((Q K^T) * scale + mask) V as defined above. Items are shared out among threads. */
int fx_attention(int windows, int heads, int Tq, int T, int D, const float *q, long sq0, long sq1, long ldq,
                 const float *k, long sk0, long sk1, long ldk, const float *v, long sv0, long sv1, long ldv,
                 const float *mask, long sm0, long ldm, float scale, float *o, long so0, long so1, long ldo,
                 int threads) {
    if (windows <= 0 || heads <= 0 || Tq <= 0 || D <= 0) return 0;
    if (T <= 0) return -2;
    const fx_ops *ops = fx_ops_in_use();
    int nr = ops->nr;
    long items = (long)windows * heads;
    size_t panel = (size_t)((T > D ? T : D) + nr) * (size_t)(T > D ? T : D), scores = (size_t)Tq * T;
    int failed = 0;
    int parallel = threads > 1 && items >= 2 * threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel) reduction(| : failed)
#else
    (void)parallel;
#endif
    for (long u = 0; u < items; u++) {
        float *buf = fx_scratch(scores + panel);
        if (!buf) {
            failed = 1;
            continue;
        }
        long w = u / heads, hd = u % heads;
        const float *qu = q + w * sq0 + hd * sq1, *ku = k + w * sk0 + hd * sk1, *vu = v + w * sv0 + hd * sv1;
        float *s = buf, *pan = buf + scores, *ou = o + w * so0 + hd * so1;
        fx_product(ops, Tq, T, D, qu, ldq, ku, 1, ldk, s, T, pan); /* scores: B = K^T */
        for (int i = 0; i < Tq; i++) ops->softmax_row(T, s + (long)i * T, scale, mask ? mask + w * sm0 + i * ldm : NULL);
        fx_product(ops, Tq, D, T, s, T, vu, ldv, 1, ou, ldo, pan); /* weighted sum over every key */
    }
    return failed ? -1 : 0;
}

/* The softmax's definition, one row at a time in scalar code (rows of N at s + i * lds, in place). */
void fx_softmax_scalar(int M, int N, float *s, long lds, float scale, const float *mask, long ldm) {
    for (int i = 0; i < M; i++) fx_softmax_row_scalar(N, s + (long)i * lds, scale, mask ? mask + (long)i * ldm : NULL);
}

/* The scalar ISA computes no vector prefix of exp. */
int fx_exp_many_scalar(int n, const float *x, float *y) {
    (void)n, (void)x, (void)y;
    return 0;
}

#if FX_X86
__attribute__((target("avx512f"))) int fx_exp_many_avx512(int n, const float *x, float *y) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fx_exp_avx512(_mm512_loadu_ps(x + i)));
    return i;
}

__attribute__((target("avx2,fma"))) int fx_exp_many_avx2(int n, const float *x, float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, fx_exp_avx2(_mm256_loadu_ps(x + i)));
    return i;
}
#endif

/* fx_exp on this path (tests): y[i] = exp(x[i]) as defined above, for x <= 0 (vectors, then scalar). */
void fx_exp_vector(int n, const float *x, float *y) {
    int i = fx_ops_in_use()->exp_many(n, x, y);
    for (; i < n; i++) y[i] = fx_exp_scalar(x[i]);
}
