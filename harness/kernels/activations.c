/* The action head's tanh in the fixed order, per ISA. */
#include "fx.h"

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
    __m256 big = _mm256_div_ps(_mm256_sub_ps(one, t), _mm256_add_ps(one, t));
    __m256 k = _mm256_cmp_ps(a, _mm256_set1_ps(FX_TANH_SMALL), _CMP_LT_OQ);
    __m256 y = _mm256_blendv_ps(big, small, k);
    return _mm256_castsi256_ps(_mm256_or_si256(_mm256_castps_si256(y), sign));
}

__attribute__((target("avx512f"))) int fx_tanh_many_avx512(int n, const float *x, float *y) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fx_tanh_avx512(_mm512_loadu_ps(x + i)));
    if (i < n) { /* the tail's lanes masked: the same lane arithmetic */
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, k, fx_tanh_avx512(_mm512_maskz_loadu_ps(k, x + i)));
    }
    return n;
}

__attribute__((target("avx2,fma"))) int fx_tanh_many_avx2(int n, const float *x, float *y) {
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
    int i = fx_ops_in_use()->tanh_many(n, x, y);
    for (; i < n; i++) y[i] = fx_tanh_scalar(x[i]);
}

/* The scalar ISA computes no vector prefix of tanh. */
int fx_tanh_many_scalar(int n, const float *x, float *y) {
    (void)n, (void)x, (void)y;
    return 0;
}

/* The definition, one element at a time (tests and the self-check). */
void fx_tanh_scalar_vector(int n, const float *x, float *y) {
    for (int i = 0; i < n; i++) y[i] = fx_tanh_scalar(x[i]);
}
