/* Fixed-order fp32 matrix products for the acting forward (harness/engine/fixedgemm.py).
 *
 * Every output element is ONE chain of fused multiply-adds over k = 0..K-1, in order, starting
 * from +0.0f:   acc = fmaf(a[i][k], b[k][j], acc)   then   c = acc + bias[j]   (bias added once, after)
 * then, for a ReLU layer, the activation as torch's relu computes it: c = c < 0 ? +0 : c (a NaN or
 * a -0 passes unchanged), and, when accumulating into a residual stream, c = c_old + (acc + bias[j]).
 * K is never split (not across threads, not across blocks). Each step is one IEEE 754 fused
 * multiply-add (one rounding), vector lanes are independent, so the result is a function of the
 * inputs alone: the same bits with AVX-512, AVX2 or scalar code, on Intel, AMD or ARM, whatever
 * the tiling, the row's position in the batch or the thread count.
 *
 * Speed is in the register-blocked micro-kernels (AVX-512: 8 rows x 32 columns of accumulators,
 * AVX2+FMA: 6 x 16) over a packed panel of B; the choice between them is made at run time and
 * changes no bit. FX_MUTATE_SPLIT_K / FX_MUTATE_BIAS_FIRST build the mutants the tests must catch.
 *
 * Build (harness/core/fixedgemm.py does it on first use): cc -O3 -shared -fPIC -fopenmp
 *   -ffp-contract=off fixedgemm.c (without -fopenmp where the compiler lacks it: one thread)   (no -ffast-math: nothing may be reassociated or contracted).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FX_X86 1
#else
#define FX_X86 0
#endif

#define FX_VERSION 4

/* Epilogue flags (fx_gemm's `flags`): add to C's old value; ReLU after the bias. */
#define FX_ACCUMULATE 1
#define FX_RELU 2
#ifndef FX_MR512
#define FX_MR512 8
#endif

/* One product: C[i*ldc + j] (op)= sum_k A[i*lda + k] * B[k*rsb + j*csb] (+ bias[j]). */
typedef struct {
    int M, N, K;
    const float *A;
    long lda;
    const float *B;
    long rsb, csb;
    const float *bias; /* NULL: none */
    float *C;
    long ldc;
    int flags; /* FX_ACCUMULATE: C = C + (chain + bias); FX_RELU: relu(chain + bias) */
} fx_job;

/* ---------------------------------------------------------------- the defining chain (scalar) */

static inline float fx_relu(float x) { return x < 0.0f ? 0.0f : x; } /* torch: max(0, x) keeps -0, NaN */

static inline float fx_epilogue(float acc, const float *bias, int j, float old, int flags) {
#ifdef FX_MUTATE_BIAS_FIRST
    (void)bias;
    (void)j; /* the bias went in first: see fx_chain_start */
#else
    if (bias) acc = acc + bias[j];
#endif
    if (flags & FX_RELU) acc = fx_relu(acc);
    return flags & FX_ACCUMULATE ? old + acc : acc;
}

static inline float fx_chain_start(const float *bias, int j) {
#ifdef FX_MUTATE_BIAS_FIRST
    return bias ? bias[j] : 0.0f;
#else
    (void)bias;
    (void)j;
    return 0.0f;
#endif
}

#ifdef FX_MUTATE_BIAS_FIRST
/* The bias-first mutant's chain starts for columns j0..j0+w-1 in t[0..n-1] (zeros past w). */
static void fx_bias_start(const fx_job *job, int j0, int w, float *t, int n) {
    for (int j = 0; j < n; j++) t[j] = j < w && job->bias ? job->bias[j0 + j] : 0.0f;
}
#endif

/* The definition, element by element: what every faster path below must equal bit for bit. */
void fx_gemm_scalar(int M, int N, int K, const float *A, long lda, const float *B, long rsb, long csb,
                    const float *bias, float *C, long ldc, int flags) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc = fmaf(A[i * lda + k], B[k * rsb + j * csb], acc);
            float r = bias ? acc + bias[j] : acc;
            if (flags & FX_RELU) r = fx_relu(r);
            C[i * ldc + j] = flags & FX_ACCUMULATE ? C[i * ldc + j] + r : r;
        }
}

/* ---------------------------------------------------------------- packing */

/* Panel p of B (columns p*nr .. p*nr+nr-1), K x nr, row-major, zero-padded past N. */
static void fx_pack(const fx_job *job, int nr, float *dst) {
    int panels = (job->N + nr - 1) / nr;
    for (int p = 0; p < panels; p++) {
        float *d = dst + (long)p * job->K * nr;
        int j0 = p * nr, w = job->N - j0 < nr ? job->N - j0 : nr;
        if (job->rsb == 1 && job->csb != 1) { /* a transposed B (attention's keys): read along k */
            for (int j = 0; j < nr; j++) {
                const float *s = job->B + (long)(j0 + j) * job->csb;
                if (j < w)
                    for (int k = 0; k < job->K; k++) d[(long)k * nr + j] = s[k];
                else
                    for (int k = 0; k < job->K; k++) d[(long)k * nr + j] = 0.0f;
            }
            continue;
        }
        for (int k = 0; k < job->K; k++) {
            const float *s = job->B + k * job->rsb + (long)j0 * job->csb;
            float *row = d + (long)k * nr;
            if (job->csb == 1) {
                memcpy(row, s, sizeof(float) * w);
            } else {
                for (int j = 0; j < w; j++) row[j] = s[(long)j * job->csb];
            }
            for (int j = w; j < nr; j++) row[j] = 0.0f;
        }
    }
}

/* ---------------------------------------------------------------- micro-kernels
 * One tile: rows r0..r0+mr-1 (row pointers clamped to valid rows), columns j0..j0+w-1 of panel bp.
 * K split only by the FX_MUTATE_SPLIT_K mutant (two chains, added). */

#ifdef FX_MUTATE_SPLIT_K
#define FX_KSPLIT(K) ((K) / 2)
#else
#define FX_KSPLIT(K) 0
#endif

static void fx_tile_generic(const fx_job *job, const float *bp, int nr, int i0, int mr, int j0, int w) {
    float acc[16];
    int K = job->K, ks = FX_KSPLIT(K);
    for (int r = 0; r < mr; r++) {
        const float *a = job->A + (long)(i0 + r) * job->lda;
        for (int j = 0; j < w; j++) acc[j] = fx_chain_start(job->bias, j0 + j);
        float *acc2 = acc; /* mutant: second half in its own chain */
        float part[16];
        for (int k = 0; k < K; k++) {
            if (ks && k == ks) {
                memcpy(part, acc, sizeof(float) * w);
                for (int j = 0; j < w; j++) acc2[j] = 0.0f;
            }
            const float *b = bp + (long)k * nr;
            for (int j = 0; j < w; j++) acc[j] = fmaf(a[k], b[j], acc[j]);
        }
        if (ks)
            for (int j = 0; j < w; j++) acc[j] = part[j] + acc[j];
        float *c = job->C + (long)(i0 + r) * job->ldc + j0;
        for (int j = 0; j < w; j++) c[j] = fx_epilogue(acc[j], job->bias, j0 + j, c[j], job->flags);
    }
}

#if FX_X86
__attribute__((target("avx2,fma"))) static void fx_tile_avx2(const fx_job *job, const float *bp, int i0, int mr,
                                                              int j0, int w) {
    enum { MR = 6 };
    const float *a[MR];
    for (int r = 0; r < MR; r++) a[r] = job->A + (long)(i0 + (r < mr ? r : mr - 1)) * job->lda;
    __m256 c0[MR], c1[MR], h0[MR], h1[MR];
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
#ifdef FX_MUTATE_BIAS_FIRST
    float t0[16];
    fx_bias_start(job, j0, w, t0, 16);
    s0 = _mm256_loadu_ps(t0), s1 = _mm256_loadu_ps(t0 + 8);
#endif
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) c0[r] = s0, c1[r] = s1, h0[r] = h1[r] = _mm256_setzero_ps();
    int K = job->K, ks = FX_KSPLIT(K);
    for (int k = 0; k < K; k++) {
        if (ks && k == ks)
#pragma GCC unroll 16
            for (int r = 0; r < MR; r++) h0[r] = c0[r], h1[r] = c1[r], c0[r] = c1[r] = _mm256_setzero_ps();
        __m256 b0 = _mm256_loadu_ps(bp + (long)k * 16), b1 = _mm256_loadu_ps(bp + (long)k * 16 + 8);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m256 x = _mm256_broadcast_ss(a[r] + k);
            c0[r] = _mm256_fmadd_ps(x, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(x, b1, c1[r]);
        }
    }
    float t[16];
    for (int r = 0; r < mr; r++) {
        if (ks) c0[r] = _mm256_add_ps(h0[r], c0[r]), c1[r] = _mm256_add_ps(h1[r], c1[r]);
        _mm256_storeu_ps(t, c0[r]);
        _mm256_storeu_ps(t + 8, c1[r]);
        float *c = job->C + (long)(i0 + r) * job->ldc + j0;
        for (int j = 0; j < w; j++) c[j] = fx_epilogue(t[j], job->bias, j0 + j, c[j], job->flags);
    }
}

__attribute__((target("avx512f"))) static void fx_tile_avx512(const fx_job *job, const float *bp, int i0, int mr,
                                                              int j0, int w) {
    enum { MR = FX_MR512 };
    const float *a[MR];
    for (int r = 0; r < MR; r++) a[r] = job->A + (long)(i0 + (r < mr ? r : mr - 1)) * job->lda;
    __m512 c0[MR], c1[MR], h0[MR], h1[MR];
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
#ifdef FX_MUTATE_BIAS_FIRST
    float t0[32];
    fx_bias_start(job, j0, w, t0, 32);
    s0 = _mm512_loadu_ps(t0), s1 = _mm512_loadu_ps(t0 + 16);
#endif
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) c0[r] = s0, c1[r] = s1, h0[r] = h1[r] = _mm512_setzero_ps();
    int K = job->K, ks = FX_KSPLIT(K);
    for (int k = 0; k < K; k++) {
        if (ks && k == ks)
#pragma GCC unroll 16
            for (int r = 0; r < MR; r++) h0[r] = c0[r], h1[r] = c1[r], c0[r] = c1[r] = _mm512_setzero_ps();
        __m512 b0 = _mm512_loadu_ps(bp + (long)k * 32), b1 = _mm512_loadu_ps(bp + (long)k * 32 + 16);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m512 x = _mm512_set1_ps(a[r][k]);
            c0[r] = _mm512_fmadd_ps(x, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(x, b1, c1[r]);
        }
    }
    __mmask16 m0 = (__mmask16)(w >= 16 ? 0xFFFF : ((1u << w) - 1u));
    __mmask16 m1 = (__mmask16)(w >= 32 ? 0xFFFF : (w <= 16 ? 0 : ((1u << (w - 16)) - 1u)));
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps(), zero = _mm512_setzero_ps();
    int has_bias = job->bias != NULL;
#ifdef FX_MUTATE_BIAS_FIRST
    has_bias = 0;
#endif
    if (has_bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, job->bias + j0);
        bias1 = _mm512_maskz_loadu_ps(m1, job->bias + j0 + 16);
    }
    for (int r = 0; r < mr; r++) {
        if (ks) c0[r] = _mm512_add_ps(h0[r], c0[r]), c1[r] = _mm512_add_ps(h1[r], c1[r]);
        if (has_bias) c0[r] = _mm512_add_ps(c0[r], bias0), c1[r] = _mm512_add_ps(c1[r], bias1);
        if (job->flags & FX_RELU) { /* x < 0 ? +0 : x, lane by lane (NaN and -0 unchanged) */
            c0[r] = _mm512_mask_mov_ps(c0[r], _mm512_cmp_ps_mask(c0[r], zero, _CMP_LT_OQ), zero);
            c1[r] = _mm512_mask_mov_ps(c1[r], _mm512_cmp_ps_mask(c1[r], zero, _CMP_LT_OQ), zero);
        }
        float *c = job->C + (long)(i0 + r) * job->ldc + j0;
        if (job->flags & FX_ACCUMULATE) {
            c0[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), c0[r]);
            c1[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), c1[r]);
        }
        _mm512_mask_storeu_ps(c, m0, c0[r]);
        _mm512_mask_storeu_ps(c + 16, m1, c1[r]);
    }
}
#endif

#if FX_X86
/* One or two rows of A against an unpacked B (a single query's attention: packing B would cost more
 * than the product). Lanes run over columns j: B[k, j..j+15] is a load where B's rows are contiguous
 * (csb == 1) and a gather otherwise (keys transposed by strides); each lane is the defining chain
 * over k in order, so the bits are the packed path's. */
__attribute__((target("avx512f"))) static void fx_rows_avx512(const fx_job *job) {
    int K = job->K, ks = FX_KSPLIT(K);
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32((int)job->csb));
    __m512 zero = _mm512_setzero_ps();
    for (int i = 0; i < job->M; i++) {
        const float *a = job->A + (long)i * job->lda;
        for (int j0 = 0; j0 < job->N; j0 += 16) {
            int w = job->N - j0 < 16 ? job->N - j0 : 16;
            __mmask16 m = (__mmask16)(w >= 16 ? 0xFFFF : ((1u << w) - 1u));
            __m512 acc = zero, half = zero;
#ifdef FX_MUTATE_BIAS_FIRST
            if (job->bias) acc = _mm512_maskz_loadu_ps(m, job->bias + j0);
#endif
            const float *b = job->B + (long)j0 * job->csb;
            for (int k = 0; k < K; k++) {
                if (ks && k == ks) half = acc, acc = zero;
                __m512 x = job->csb == 1 ? _mm512_maskz_loadu_ps(m, b + (long)k * job->rsb)
                                         : _mm512_mask_i32gather_ps(zero, m, idx, b + (long)k * job->rsb, 4);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(a[k]), x, acc);
            }
            if (ks) acc = _mm512_add_ps(half, acc);
            float t[16];
            _mm512_storeu_ps(t, acc);
            float *c = job->C + (long)i * job->ldc + j0;
            for (int j = 0; j < w; j++) c[j] = fx_epilogue(t[j], job->bias, j0 + j, c[j], job->flags);
        }
    }
}

__attribute__((target("avx2,fma"))) static void fx_rows_avx2(const fx_job *job) {
    int K = job->K, ks = FX_KSPLIT(K);
    for (int i = 0; i < job->M; i++) {
        const float *a = job->A + (long)i * job->lda;
        for (int j0 = 0; j0 < job->N; j0 += 8) {
            int w = job->N - j0 < 8 ? job->N - j0 : 8;
            __m256 acc = _mm256_setzero_ps(), half = _mm256_setzero_ps();
#ifdef FX_MUTATE_BIAS_FIRST
            float t0[8];
            fx_bias_start(job, j0, w, t0, 8);
            acc = _mm256_loadu_ps(t0);
#endif
            const float *b = job->B + (long)j0 * job->csb;
            for (int k = 0; k < K; k++) {
                if (ks && k == ks) half = acc, acc = _mm256_setzero_ps();
                float x[8] = {0};
                for (int j = 0; j < w; j++) x[j] = b[(long)k * job->rsb + (long)j * job->csb];
                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(a + k), _mm256_loadu_ps(x), acc);
            }
            if (ks) acc = _mm256_add_ps(half, acc);
            float t[8];
            _mm256_storeu_ps(t, acc);
            float *c = job->C + (long)i * job->ldc + j0;
            for (int j = 0; j < w; j++) c[j] = fx_epilogue(t[j], job->bias, j0 + j, c[j], job->flags);
        }
    }
}
#endif

/* ---------------------------------------------------------------- dispatch and threads */

enum { FX_GENERIC = 0, FX_AVX2 = 1, FX_AVX512 = 2 };
static int fx_isa = -1;   /* what this CPU runs (fx_init) */
static int fx_force = -1; /* fx_set_isa: tests run every path on one machine */

static int fx_detect(void) {
#if FX_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return FX_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FX_AVX2;
#endif
    return FX_GENERIC;
}

static int fx_path(void) {
    if (fx_isa < 0) fx_isa = fx_detect();
    return fx_force >= 0 && fx_force <= fx_isa ? fx_force : fx_isa;
}

/* Panel widths and row blocks per path. */
static void fx_shape(int isa, int *nr, int *mr) {
    if (isa == FX_AVX512) *nr = 32, *mr = FX_MR512;
    else if (isa == FX_AVX2) *nr = 16, *mr = 6;
    else *nr = 16, *mr = 4;
}

/* Tiles [t0, t1) of a job whose B is packed at bp: tile t = row block (t / panels), panel (t % panels):
 * a row block of A (mr x K) stays in L1 while the packed panels stream from L2. */
static void fx_run_tiles(const fx_job *job, const float *bp, int isa, long t0, long t1) {
    int nr, mr;
    fx_shape(isa, &nr, &mr);
    long panels = (job->N + nr - 1) / nr;
    for (long t = t0; t < t1; t++) {
        int p = (int)(t % panels), i0 = (int)(t / panels) * mr;
        int rows = job->M - i0 < mr ? job->M - i0 : mr;
        int j0 = p * nr, w = job->N - j0 < nr ? job->N - j0 : nr;
        const float *panel = bp + (long)p * job->K * nr;
#if FX_X86
        if (isa == FX_AVX512) {
            fx_tile_avx512(job, panel, i0, rows, j0, w);
            continue;
        }
        if (isa == FX_AVX2) {
            fx_tile_avx2(job, panel, i0, rows, j0, w);
            continue;
        }
#endif
        fx_tile_generic(job, panel, nr, i0, rows, j0, w);
    }
}

static _Thread_local float *fx_buf = NULL;
static _Thread_local size_t fx_buf_size = 0;

static float *fx_scratch(size_t floats) {
    if (floats > fx_buf_size) {
        free(fx_buf);
        fx_buf = (float *)aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
        fx_buf_size = fx_buf ? floats : 0;
    }
    return fx_buf;
}

/* ---------------------------------------------------------------- entry points */

/* Batched over (b0, b1): item (u, v) uses A + u*sa0 + v*sa1, B + u*sb0 + v*sb1, C + u*sc0 + v*sc1.
 * B is packed into panels here (bp: NULL) or was packed once by fx_pack_b (bp: its panels; one
 * item). Tiles of all items are shared out among `threads` OpenMP threads (the runtime torch
 * uses, so the two never compete for cores); a tile's bits do not depend on which thread runs it. */
int fx_gemm(int b0, int b1, int M, int N, int K, const float *A, long sa0, long sa1, long lda, const float *B,
            long sb0, long sb1, long rsb, long csb, const float *bias, float *C, long sc0, long sc1, long ldc,
            int flags, int threads, const float *bp) {
    if (M <= 0 || N <= 0 || b0 <= 0 || b1 <= 0) return 0;
    long items = (long)b0 * b1;
    if (K <= 0) { /* empty chain: +0, then the bias */
        for (long it = 0; it < items; it++) {
            float *Ci = C + (it / b1) * sc0 + (it % b1) * sc1;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    float *c = Ci + (long)i * ldc + j;
                    *c = fx_epilogue(fx_chain_start(bias, j), bias, j, *c, flags);
                }
        }
        return 0;
    }
    int isa = fx_path(), nr, mr;
    fx_shape(isa, &nr, &mr);
#if FX_X86
    if (bp == NULL && M <= 2 && isa != FX_GENERIC && (long)N * csb < (1L << 31)) { /* no packing: see fx_rows_* */
        int parallel = threads > 1 && items >= 2 * threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
#else
        (void)parallel;
#endif
        for (long it = 0; it < items; it++) {
            fx_job job = {M,    N,   K,   A + (it / b1) * sa0 + (it % b1) * sa1, lda, B + (it / b1) * sb0 + (it % b1) * sb1,
                          rsb,  csb, bias, C + (it / b1) * sc0 + (it % b1) * sc1, ldc, flags};
            if (isa == FX_AVX512)
                fx_rows_avx512(&job);
            else
                fx_rows_avx2(&job);
        }
        return 0;
    }
#endif
    long panels = (N + nr - 1) / nr, rowblocks = (M + mr - 1) / mr, per_item = panels * K * nr;
    if (bp == NULL) {
        float *buf = fx_scratch((size_t)(items * per_item));
        if (!buf) return -1;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && items > 1)
#endif
        for (long it = 0; it < items; it++) {
            fx_job job = {M, N, K, NULL, lda, B + (it / b1) * sb0 + (it % b1) * sb1, rsb, csb, NULL, NULL, 0, 0};
            fx_pack(&job, nr, buf + it * per_item);
        }
        bp = buf;
    } else if (items != 1) {
        return -2;
    }
    long tiles = panels * rowblocks, total = items * tiles;
    int parallel = threads > 1 && total >= 2 * threads && (double)items * M * N * K >= 65536.0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
#else
    (void)parallel;
#endif
    for (long t = 0; t < total; t++) {
        long it = t / tiles;
        fx_job job = {M,    N,   K,   A + (it / b1) * sa0 + (it % b1) * sa1, lda, NULL, 0, 0, bias,
                      C + (it / b1) * sc0 + (it % b1) * sc1, ldc, flags};
        fx_run_tiles(&job, bp + it * per_item, isa, t % tiles, t % tiles + 1);
    }
    return 0;
}

static void fx_ln_rows(int isa, int i0, int i1, int N, const float *X, long ldx, const float *w, const float *b,
                       float eps, float *Y, long ldy);

/* The MLP of a transformer block, fused by row block:  X[i, :] += act(Y[i, :] @ W1 + b1) @ W2 + b2
 * for rows i < M, with W1 (H x I) and W2 (I x H) packed once by fx_pack_b (p1, p2), act ReLU when
 * relu (else none). Each row block's hidden activations (mr x I) live in a thread's own buffer
 * (L1/L2) instead of an M x I matrix in memory. Every element is the chain it is in two fx_gemm
 * calls (the hidden: chain over H, + b1, ReLU; X: X + (chain over I, + b2)): the same bits.
 * lnw non-NULL: Y is LN(X) (fx_layernorm with lnw, lnb, eps), computed by row block into the
 * thread's buffer first (Y and ldy unused): the same bits as fx_layernorm, then this. */
int fx_mlp(int M, int H, int I, const float *Y, long ldy, const float *p1, const float *b1, const float *p2,
           const float *b2, float *X, long ldx, int relu, int threads, const float *lnw, const float *lnb,
           float eps) {
    if (M <= 0 || H <= 0 || I <= 0) return 0;
    int isa = fx_path(), nr, mr;
    fx_shape(isa, &nr, &mr);
    long blocks = (M + mr - 1) / mr, panels1 = (I + nr - 1) / nr, panels2 = (H + nr - 1) / nr;
    int failed = 0;
    int parallel = threads > 1 && blocks >= 2 * threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel) reduction(| : failed)
#else
    (void)parallel;
#endif
    for (long blk = 0; blk < blocks; blk++) {
        float *hid = fx_scratch((size_t)mr * I + (lnw ? (size_t)mr * H : 0));
        if (!hid) {
            failed = 1;
            continue;
        }
        int i0 = (int)(blk * mr), rows = M - i0 < mr ? M - i0 : mr;
        const float *y = Y + (long)i0 * ldy;
        long ld = ldy;
        if (lnw) { /* the block's layer norm first: Y = LN(X) rows, in the thread's buffer */
            float *normed = hid + (size_t)mr * I;
            fx_ln_rows(isa, 0, rows, H, X + (long)i0 * ldx, ldx, lnw, lnb, eps, normed, H);
            y = normed, ld = H;
        }
        fx_job up = {rows, I, H, y, ld, NULL, 0, 0, b1, hid, I, relu ? FX_RELU : 0};
        fx_run_tiles(&up, p1, isa, 0, panels1);
        fx_job down = {rows, H, I, hid, I, NULL, 0, 0, b2, X + (long)i0 * ldx, ldx, FX_ACCUMULATE};
        fx_run_tiles(&down, p2, isa, 0, panels2);
    }
    return failed ? -1 : 0;
}

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

static float fx_tree16(float *s) {
    for (int h = 8; h >= 1; h >>= 1)
        for (int l = 0; l < h; l++) s[l] = s[l] + s[l + h];
    return s[0];
}

static void fx_ln_row_scalar(int N, const float *x, const float *w, const float *b, float eps, float *y) {
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
__attribute__((target("avx512f"))) static void fx_ln_row_avx512(int N, const float *x, const float *w,
                                                                 const float *b, float eps, float *y) {
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

__attribute__((target("avx2,fma"))) static void fx_ln_row_avx2(int N, const float *x, const float *w,
                                                                const float *b, float eps, float *y) {
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

static void fx_ln_rows(int isa, int i0, int i1, int N, const float *X, long ldx, const float *w, const float *b,
                       float eps, float *Y, long ldy) {
    for (int i = i0; i < i1; i++) {
        const float *x = X + (long)i * ldx;
        float *y = Y + (long)i * ldy;
#if FX_X86
        if (isa == FX_AVX512) {
            fx_ln_row_avx512(N, x, w, b, eps, y);
            continue;
        }
        if (isa == FX_AVX2) {
            fx_ln_row_avx2(N, x, w, b, eps, y);
            continue;
        }
#endif
        fx_ln_row_scalar(N, x, w, b, eps, y);
    }
}

/* Layer norm of M rows (see above) on this CPU's path; rows shared out among `threads` (Y may be X). */
int fx_layernorm(int M, int N, const float *X, long ldx, const float *w, const float *b, float eps, float *Y,
                 long ldy, int threads) {
    if (M <= 0 || N <= 0) return 0;
    int isa = fx_path();
    int blocks = (M + 31) / 32, parallel = threads > 1 && blocks >= 2 * threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
#else
    (void)parallel;
#endif
    for (int blk = 0; blk < blocks; blk++) {
        int i0 = blk * 32, i1 = i0 + 32 < M ? i0 + 32 : M;
        fx_ln_rows(isa, i0, i1, N, X, ldx, w, b, eps, Y, ldy);
    }
    return 0;
}

/* The definition, one row at a time in scalar code (what the vector paths are checked against). */
void fx_layernorm_scalar(int M, int N, const float *X, long ldx, const float *w, const float *b, float eps,
                         float *Y, long ldy) {
    for (int i = 0; i < M; i++) fx_ln_row_scalar(N, X + (long)i * ldx, w, b, eps, Y + (long)i * ldy);
}

/* C = LN(X) @ B + bias (flags as fx_gemm's) with B packed once (bp): X (M x K) is normalised by
 * row block into the thread's buffer, then that block's tiles run over every panel; the (M x K)
 * normalised matrix never goes to memory. Same bits as fx_layernorm, then fx_gemm. */
int fx_ln_gemm(int M, int N, int K, const float *X, long ldx, const float *lnw, const float *lnb, float eps,
               const float *bp, const float *bias, float *C, long ldc, int flags, int threads) {
    if (M <= 0 || N <= 0 || K <= 0) return M <= 0 || N <= 0 ? 0 : -2;
    int isa = fx_path(), nr, mr;
    fx_shape(isa, &nr, &mr);
    long blocks = (M + mr - 1) / mr, panels = (N + nr - 1) / nr;
    int failed = 0;
    int parallel = threads > 1 && blocks >= 2 * threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel) reduction(| : failed)
#else
    (void)parallel;
#endif
    for (long blk = 0; blk < blocks; blk++) {
        float *normed = fx_scratch((size_t)mr * K);
        if (!normed) {
            failed = 1;
            continue;
        }
        int i0 = (int)(blk * mr), rows = M - i0 < mr ? M - i0 : mr;
        fx_ln_rows(isa, 0, rows, K, X + (long)i0 * ldx, ldx, lnw, lnb, eps, normed, K);
        fx_job job = {rows, N, K, normed, K, NULL, 0, 0, bias, C + (long)i0 * ldc, ldc, flags};
        fx_run_tiles(&job, bp, isa, 0, panels);
    }
    return failed ? -1 : 0;
}

/* ---------------------------------------------------------------- attention (fixed order)
 *
 * For each item (a window's head): S = Q K^T (each score the defining fmaf chain over d), then
 * s = (s * scale) + mask (two roundings, as torch's mul_ and add_), then the softmax of each row,
 * defined lane by lane like the layer norm:
 *   m = max_j s_j;  e_j = fx_exp(s_j - m);  sum: 16 lane sums e[j % 16] in order, tree 8, 4, 2, 1;
 *   w_j = e_j / sum
 * and O = W V (each element the chain over all t keys in order; masked keys weigh exactly +0).
 * fx_exp (x <= 0 here): 0 below -87 (and at -inf), NaN stays NaN; otherwise n = rint(x * log2 e),
 * r = fmaf(n, -C1, x), r = fmaf(n, -C2, r) (Cody-Waite, Cephes' C1, C2), a degree-7 Taylor
 * polynomial in r by fmaf (Horner over fx_exp_poly), times 2^n built in the exponent bits. Every step is one IEEE
 * operation, the same in AVX-512, AVX2 and scalar code: the bits do not depend on the CPU, and a
 * row's bits not on its batch (items are independent). Within 2 ulp of exp on [-87, 0]. */

static const float fx_exp_poly[8] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                     1.0f / 6.0f,    0.5f,           1.0f,           1.0f};
/* exp(r) on |r| <= ln2 / 2: Horner's rule over these (degree 7, Taylor), one fmaf a step */

#define FX_EXP_LO (-87.0f)
#define FX_LOG2E 1.44269504088896341f
#define FX_C1 0.693359375f
#define FX_C2 (-2.12194440e-4f)

static inline float fx_exp_scalar(float x) {
    if (!(x >= FX_EXP_LO)) return x != x ? x : 0.0f;
    float n = rintf(x * FX_LOG2E);
    float r = fmaf(n, -FX_C1, x);
    r = fmaf(n, -FX_C2, r);
    float p = fx_exp_poly[0];
    for (int i = 1; i < 8; i++) p = fmaf(p, r, fx_exp_poly[i]);
    union {
        uint32_t u;
        float f;
    } two = {(uint32_t)((int)n + 127) << 23};
    return p * two.f;
}

/* One row of scores in place: scale, mask (NULL: none), softmax (the definition above). */
static void fx_softmax_row_scalar(int N, float *s, float scale, const float *mask) {
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
__attribute__((target("avx512f"))) static inline __m512 fx_exp_avx512(__m512 x) {
    __mmask16 ok = _mm512_cmp_ps_mask(x, _mm512_set1_ps(FX_EXP_LO), _CMP_GE_OQ);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(FX_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-FX_C1), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-FX_C2), r);
    __m512 p = _mm512_set1_ps(fx_exp_poly[0]);
#pragma GCC unroll 8
    for (int i = 1; i < 8; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(fx_exp_poly[i]));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(_mm512_maskz_mov_ps(ok, n)), _mm512_set1_epi32(127)), 23);
    __m512 out = _mm512_maskz_mul_ps(ok, p, _mm512_castsi512_ps(e));
    return _mm512_mask_mov_ps(out, nan, x);
}

__attribute__((target("avx512f"))) static void fx_softmax_row_avx512(int N, float *s, float scale, const float *mask) {
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

__attribute__((target("avx2,fma"))) static inline __m256 fx_exp_avx2(__m256 x) {
    __m256 ok = _mm256_cmp_ps(x, _mm256_set1_ps(FX_EXP_LO), _CMP_GE_OQ);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(FX_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-FX_C1), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-FX_C2), r);
    __m256 p = _mm256_set1_ps(fx_exp_poly[0]);
#pragma GCC unroll 8
    for (int i = 1; i < 8; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(fx_exp_poly[i]));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(_mm256_and_ps(ok, n)), _mm256_set1_epi32(127)), 23);
    __m256 out = _mm256_and_ps(ok, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
    return _mm256_blendv_ps(out, x, nan);
}

__attribute__((target("avx2,fma"))) static __m256i fx_tail8(int left) {
    /* lanes l < left of 8 on (AVX2's maskload/maskstore take a sign mask) */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

__attribute__((target("avx2,fma"))) static void fx_softmax_row_avx2(int N, float *s, float scale, const float *mask) {
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

static void fx_softmax_row(int isa, int N, float *s, float scale, const float *mask) {
#if FX_X86
    if (isa == FX_AVX512) {
        fx_softmax_row_avx512(N, s, scale, mask);
        return;
    }
    if (isa == FX_AVX2) {
        fx_softmax_row_avx2(N, s, scale, mask);
        return;
    }
#endif
    fx_softmax_row_scalar(N, s, scale, mask);
}

/* One product of the attention on this path: C (M x N, ldc) = A (M x K, lda) @ B (K x N by rsb, csb),
 * no bias; packs B into `panel` unless M <= 2 (the unpacked rows path). */
static void fx_product(int isa, int M, int N, int K, const float *A, long lda, const float *B, long rsb, long csb,
                       float *C, long ldc, float *panel) {
    fx_job job = {M, N, K, A, lda, B, rsb, csb, NULL, C, ldc, 0};
#if FX_X86
    if (M <= 2 && isa != FX_GENERIC && (long)N * csb < (1L << 31)) { /* 32-bit gather offsets */
        if (isa == FX_AVX512)
            fx_rows_avx512(&job);
        else
            fx_rows_avx2(&job);
        return;
    }
#endif
    int nr, mr;
    fx_shape(isa, &nr, &mr);
    fx_pack(&job, nr, panel);
    long tiles = (long)((M + mr - 1) / mr) * ((N + nr - 1) / nr);
    fx_run_tiles(&job, panel, isa, 0, tiles);
}

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
    int isa = fx_path(), nr, mr;
    fx_shape(isa, &nr, &mr);
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
        fx_product(isa, Tq, T, D, qu, ldq, ku, 1, ldk, s, T, pan); /* scores: B = K^T */
        for (int i = 0; i < Tq; i++) fx_softmax_row(isa, T, s + (long)i * T, scale, mask ? mask + w * sm0 + i * ldm : NULL);
        fx_product(isa, Tq, D, T, s, T, vu, ldv, 1, ou, ldo, pan); /* weighted sum over every key */
    }
    return failed ? -1 : 0;
}

/* The softmax's definition, one row at a time in scalar code (rows of N at s + i * lds, in place). */
void fx_softmax_scalar(int M, int N, float *s, long lds, float scale, const float *mask, long ldm) {
    for (int i = 0; i < M; i++) fx_softmax_row_scalar(N, s + (long)i * lds, scale, mask ? mask + (long)i * ldm : NULL);
}

#if FX_X86
__attribute__((target("avx512f"))) static int fx_exp_many_avx512(int n, const float *x, float *y) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fx_exp_avx512(_mm512_loadu_ps(x + i)));
    return i;
}

__attribute__((target("avx2,fma"))) static int fx_exp_many_avx2(int n, const float *x, float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, fx_exp_avx2(_mm256_loadu_ps(x + i)));
    return i;
}
#endif

/* fx_exp on this path (tests): y[i] = exp(x[i]) as defined above, for x <= 0 (vectors, then scalar). */
void fx_exp_vector(int n, const float *x, float *y) {
    int isa = fx_path(), i = 0;
#if FX_X86
    if (isa == FX_AVX512) i = fx_exp_many_avx512(n, x, y);
    if (isa == FX_AVX2) i = fx_exp_many_avx2(n, x, y);
#endif
    (void)isa;
    for (; i < n; i++) y[i] = fx_exp_scalar(x[i]);
}

/* ---------------------------------------------------------------- tanh (the action head)
 *
 * The action head's tanh, defined here rather than left to torch (whose CPU tanh is MKL's VML,
 * whose bits depend on the CPU's vendor and MKL's branch for it: the one ISA dependence that
 * was left in an fp32 episode). With a = |x|:
 *   a < 0.25:  s = a * a;  p = Horner over fx_tanh_poly in s by fmaf;  y = fmaf(a * s, p, a)
 *              (tanh's Taylor series to a^11: below float rounding on [0, 0.25])
 *   else:      t = fx_exp(-2a) (the softmax's exp; 0 below -87);  y = (1 - t) / (1 + t)
 *   tanh(x) = y with x's sign (-0 stays -0, NaN stays NaN, +-inf gives +-1).
 * Every step one IEEE operation, the same in AVX-512, AVX2 and scalar code. Within 3 ulp of tanh. */

static const float fx_tanh_poly[5] = {-1382.0f / 155925.0f, 62.0f / 2835.0f, -17.0f / 315.0f, 2.0f / 15.0f,
                                      -1.0f / 3.0f};
#define FX_TANH_SMALL 0.25f

static inline float fx_tanh_scalar(float x) {
    union {
        float f;
        uint32_t u;
    } v = {x}, y;
    uint32_t sign = v.u & 0x80000000u;
    v.u &= 0x7FFFFFFFu;
    float a = v.f;
    if (a < FX_TANH_SMALL) {
        float s = a * a, p = fx_tanh_poly[0];
        for (int i = 1; i < 5; i++) p = fmaf(p, s, fx_tanh_poly[i]);
        y.f = fmaf(a * s, p, a);
    } else {
        float t = fx_exp_scalar(-2.0f * a);
        y.f = (1.0f - t) / (1.0f + t);
    }
    y.u |= sign;
    return y.f;
}

#if FX_X86
__attribute__((target("avx512f"))) static inline __m512 fx_tanh_avx512(__m512 x) {
    __m512i bits = _mm512_castps_si512(x), signbit = _mm512_set1_epi32((int)0x80000000u);
    __m512i sign = _mm512_and_si512(bits, signbit);
    __m512 a = _mm512_castsi512_ps(_mm512_andnot_si512(signbit, bits));
    __m512 s = _mm512_mul_ps(a, a), p = _mm512_set1_ps(fx_tanh_poly[0]);
#pragma GCC unroll 5
    for (int i = 1; i < 5; i++) p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(fx_tanh_poly[i]));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(a, s), p, a);
    __m512 t = fx_exp_avx512(_mm512_mul_ps(_mm512_set1_ps(-2.0f), a));
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 big = _mm512_div_ps(_mm512_sub_ps(one, t), _mm512_add_ps(one, t));
    __mmask16 k = _mm512_cmp_ps_mask(a, _mm512_set1_ps(FX_TANH_SMALL), _CMP_LT_OQ);
    __m512 y = _mm512_mask_mov_ps(big, k, small);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
}

__attribute__((target("avx2,fma"))) static inline __m256 fx_tanh_avx2(__m256 x) {
    __m256i bits = _mm256_castps_si256(x), signbit = _mm256_set1_epi32((int)0x80000000u);
    __m256i sign = _mm256_and_si256(bits, signbit);
    __m256 a = _mm256_castsi256_ps(_mm256_andnot_si256(signbit, bits));
    __m256 s = _mm256_mul_ps(a, a), p = _mm256_set1_ps(fx_tanh_poly[0]);
#pragma GCC unroll 5
    for (int i = 1; i < 5; i++) p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(fx_tanh_poly[i]));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(a, s), p, a);
    __m256 t = fx_exp_avx2(_mm256_mul_ps(_mm256_set1_ps(-2.0f), a));
    __m256 one = _mm256_set1_ps(1.0f);
#ifdef FX_MUTATE_AVX2_TANH /* the AVX2 path alone multiplies by a reciprocal: what an AVX2-only CPU would see */
    __m256 big = _mm256_mul_ps(_mm256_sub_ps(one, t), _mm256_div_ps(one, _mm256_add_ps(one, t)));
#else
    __m256 big = _mm256_div_ps(_mm256_sub_ps(one, t), _mm256_add_ps(one, t));
#endif
    __m256 k = _mm256_cmp_ps(a, _mm256_set1_ps(FX_TANH_SMALL), _CMP_LT_OQ);
    __m256 y = _mm256_blendv_ps(big, small, k);
    return _mm256_castsi256_ps(_mm256_or_si256(_mm256_castps_si256(y), sign));
}

__attribute__((target("avx512f"))) static int fx_tanh_many_avx512(int n, const float *x, float *y) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fx_tanh_avx512(_mm512_loadu_ps(x + i)));
    if (i < n) { /* the tail's lanes masked: the same lane arithmetic */
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, k, fx_tanh_avx512(_mm512_maskz_loadu_ps(k, x + i)));
    }
    return n;
}

__attribute__((target("avx2,fma"))) static int fx_tanh_many_avx2(int n, const float *x, float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, fx_tanh_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i k = fx_tail8(n - i);
        _mm256_maskstore_ps(y + i, k, fx_tanh_avx2(_mm256_maskload_ps(x + i, k)));
    }
    return n;
}
#endif

/* y[i] = tanh(x[i]) as defined above, on this CPU's path (y may be x: in place). */
void fx_tanh_vector(int n, const float *x, float *y) {
    int isa = fx_path(), i = 0;
#if FX_X86
    if (isa == FX_AVX512) i = fx_tanh_many_avx512(n, x, y);
    if (isa == FX_AVX2) i = fx_tanh_many_avx2(n, x, y);
#endif
    (void)isa;
    for (; i < n; i++) y[i] = fx_tanh_scalar(x[i]);
}

/* The definition, one element at a time (tests and the self-check). */
void fx_tanh_scalar_vector(int n, const float *x, float *y) {
    for (int i = 0; i < n; i++) y[i] = fx_tanh_scalar(x[i]);
}

/* Floats a packed (K, N) B takes on this CPU's path (fx_pack_b's dst). */
long fx_packed_size(int N, int K) {
    int nr, mr;
    fx_shape(fx_path(), &nr, &mr);
    return (long)((N + nr - 1) / nr) * K * nr;
}

/* Pack a (K, N) B once (weights) for fx_gemm's bp; returns the panel width. */
int fx_pack_b(int N, int K, const float *B, long rsb, long csb, float *dst) {
    int nr, mr;
    fx_shape(fx_path(), &nr, &mr);
    fx_job job = {0, N, K, NULL, 0, B, rsb, csb, NULL, NULL, 0, 0};
    fx_pack(&job, nr, dst);
    return nr;
}

/* 1 when built with OpenMP (products use torch's thread count), 0 when single-threaded. */
int fx_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* The path products take on this CPU (0 generic, 1 AVX2+FMA, 2 AVX-512), after fx_set_isa's cap. */
int fx_isa_in_use(void) { return fx_path(); }

/* Cap the path (tests run each one on the same inputs); -1 lifts the cap. */
void fx_set_isa(int isa) { fx_force = isa; }

int fx_version(void) { return FX_VERSION; }

int fx_mutant(void) {
#if defined(FX_MUTATE_SPLIT_K)
    return 1;
#elif defined(FX_MUTATE_BIAS_FIRST)
    return 2;
#elif defined(FX_MUTATE_AVX2_TANH)
    return 3;
#else
    return 0;
#endif
}
