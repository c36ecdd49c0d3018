/* The fixed-order fp32 kernels of the acting forward: what every source of harness/kernels/ shares.
 *
 * Every output element of a product is ONE chain of fused multiply-adds over k = 0..K-1, in order,
 * starting from +0.0f:   acc = fmaf(a[i][k], b[k][j], acc)   then   c = acc + bias[j]   (bias once,
 * after), then, for a ReLU layer, the activation as torch's relu computes it (c < 0 ? +0 : c; a NaN
 * or a -0 passes unchanged), and, when accumulating into a residual stream, c = c_old + (acc + bias).
 * K is never split. Each step is one IEEE 754 operation and vector lanes are independent, so the
 * result is a function of the inputs alone: the same bits with AVX-512, AVX2 or scalar code, on
 * Intel, AMD or ARM, whatever the tiling, the row's position in the batch or the thread count. The
 * layer norm, the softmax (and its exp) and the action head's tanh are defined the same way, lane by
 * lane (see norms.c, attention.c, activations.c).
 *
 * The sources, one per operation: products.c (GEMM, the fused MLP and LN+GEMM), norms.c (layer
 * norm), attention.c (scores, softmax, exp, weighted sums), activations.c (tanh), dispatch.c (which
 * ISA runs: one table of functions per ISA, fx_ops; scratch buffers; version). Each ISA's code is
 * compiled with a target attribute and chosen at run time; the choice changes no bit.
 *
 * Build (harness/kernels/build.py does it on first use): cc -O3 -std=gnu11 -shared -fPIC -fopenmp
 *   -ffp-contract=off -fno-fast-math products.c norms.c attention.c activations.c dispatch.c -lm
 * (without -fopenmp where the compiler lacks it: one thread). No -ffast-math: nothing may be
 * reassociated or contracted; every FMA is written (intrinsics, fmaf).
 */
#ifndef FX_H
#define FX_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FX_X86 1
#else
#define FX_X86 0
#endif

/* The numerics definition's version: bumped when any definition above changes its floats. */
#define FX_VERSION 4

/* Epilogue flags (fx_gemm's `flags`): add to C's old value; ReLU after the bias. */
#define FX_ACCUMULATE 1
#define FX_RELU 2
#ifndef FX_MR512
#define FX_MR512 8
#endif

enum { FX_GENERIC = 0, FX_AVX2 = 1, FX_AVX512 = 2 };

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

/* What one ISA runs: filled once per ISA (dispatch.c); callers never test the ISA themselves. */
typedef struct {
    const char *name;
    int nr, mr; /* a packed panel's width (columns of B); a tile's rows of A */
    /* one tile: rows i0..i0+mr-1, columns j0..j0+w-1 of the panel bp (nr wide) */
    void (*tile)(const fx_job *job, const float *bp, int nr, int i0, int mr, int j0, int w);
    /* one or two rows of A against an unpacked B (NULL: this ISA packs every B) */
    void (*rows)(const fx_job *job);
    void (*ln_row)(int N, const float *x, const float *w, const float *b, float eps, float *y);
    void (*softmax_row)(int N, float *s, float scale, const float *mask);
    /* y[i] = exp(x[i]) / tanh(x[i]) for a prefix of the n elements; returns its length (the rest: scalar) */
    int (*exp_many)(int n, const float *x, float *y);
    int (*tanh_many)(int n, const float *x, float *y);
} fx_ops;

/* dispatch.c */
const fx_ops *fx_ops_in_use(void); /* this CPU's best ISA, under fx_set_isa's cap */
float *fx_scratch(size_t floats);  /* the calling thread's own buffer (grown, never shrunk); NULL: no memory */

/* products.c */
void fx_run_tiles(const fx_job *job, const float *bp, const fx_ops *ops, long t0, long t1);
void fx_pack(const fx_job *job, int nr, float *dst);
void fx_product(const fx_ops *ops, int M, int N, int K, const float *A, long lda, const float *B, long rsb, long csb,
                float *C, long ldc, float *panel);
void fx_tile_scalar(const fx_job *job, const float *bp, int nr, int i0, int mr, int j0, int w);

/* norms.c */
void fx_ln_rows(const fx_ops *ops, int i0, int i1, int N, const float *X, long ldx, const float *w, const float *b,
                float eps, float *Y, long ldy);
void fx_ln_row_scalar(int N, const float *x, const float *w, const float *b, float eps, float *y);

/* attention.c */
void fx_softmax_row_scalar(int N, float *s, float scale, const float *mask);
int fx_exp_many_scalar(int n, const float *x, float *y);

/* activations.c */
int fx_tanh_many_scalar(int n, const float *x, float *y);

#if FX_X86
void fx_tile_avx2(const fx_job *job, const float *bp, int nr, int i0, int mr, int j0, int w);
void fx_tile_avx512(const fx_job *job, const float *bp, int nr, int i0, int mr, int j0, int w);
void fx_rows_avx2(const fx_job *job);
void fx_rows_avx512(const fx_job *job);
void fx_ln_row_avx2(int N, const float *x, const float *w, const float *b, float eps, float *y);
void fx_ln_row_avx512(int N, const float *x, const float *w, const float *b, float eps, float *y);
void fx_softmax_row_avx2(int N, float *s, float scale, const float *mask);
void fx_softmax_row_avx512(int N, float *s, float scale, const float *mask);
int fx_exp_many_avx2(int n, const float *x, float *y);
int fx_exp_many_avx512(int n, const float *x, float *y);
int fx_tanh_many_avx2(int n, const float *x, float *y);
int fx_tanh_many_avx512(int n, const float *x, float *y);
#endif

/* ---------------------------------------------------------------- the defining chain's epilogue */

static inline float fx_relu(float x) { return x < 0.0f ? 0.0f : x; } /* torch: max(0, x) keeps -0, NaN */

static inline float fx_epilogue(float acc, const float *bias, int j, float old, int flags) {
    if (bias) acc = acc + bias[j];
    if (flags & FX_RELU) acc = fx_relu(acc);
    return flags & FX_ACCUMULATE ? old + acc : acc;
}

/* 16 lane sums to one, by the tree 8, 4, 2, 1 (the layer norm's and the softmax's reduction). */
static inline float fx_tree16(float *s) {
    for (int h = 8; h >= 1; h >>= 1)
        for (int l = 0; l < h; l++) s[l] = s[l] + s[l + h];
    return s[0];
}

/* ---------------------------------------------------------------- exp (x <= 0), shared by softmax and tanh
 *
 * 0 below -87 (and at -inf), NaN stays NaN; otherwise n = rint(x * log2 e), r = fmaf(n, -C1, x),
 * r = fmaf(n, -C2, r) (Cody-Waite, Cephes' C1, C2), a degree-7 Taylor polynomial in r by fmaf
 * (Horner over fx_exp_poly), times 2^n built in the exponent bits. Within 2 ulp of exp on [-87, 0]. */

static const float fx_exp_poly[8] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                     1.0f / 6.0f,    0.5f,           1.0f,           1.0f};

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

/* Lanes l < left of 8 on (AVX2's maskload / maskstore take a sign mask). */
__attribute__((target("avx2,fma"))) static inline __m256i fx_tail8(int left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

#endif /* FX_H */
