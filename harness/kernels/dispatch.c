/* Which ISA runs: one table of functions per ISA, chosen once per process (and capped by
 * fx_set_isa for tests and HARNESS_KERNEL_ISA); the thread's scratch buffer; what was built. */
#include "fx.h"

static const fx_ops fx_table_scalar = {
    "scalar fmaf",       16, 4, fx_tile_scalar, NULL, fx_ln_row_scalar, fx_softmax_row_scalar, fx_exp_many_scalar,
    fx_tanh_many_scalar,
};

#if FX_X86
static const fx_ops fx_table_avx2 = {
    "AVX2+FMA",       16, 6, fx_tile_avx2, fx_rows_avx2, fx_ln_row_avx2, fx_softmax_row_avx2, fx_exp_many_avx2,
    fx_tanh_many_avx2,
};

static const fx_ops fx_table_avx512 = {
    "AVX-512",       32, FX_MR512, fx_tile_avx512, fx_rows_avx512, fx_ln_row_avx512, fx_softmax_row_avx512,
    fx_exp_many_avx512, fx_tanh_many_avx512,
};

static const fx_ops *const fx_tables[3] = {&fx_table_scalar, &fx_table_avx2, &fx_table_avx512};
#else
static const fx_ops *const fx_tables[3] = {&fx_table_scalar, &fx_table_scalar, &fx_table_scalar};
#endif

static int fx_isa = -1;   /* what this CPU runs (detected on first use) */
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

const fx_ops *fx_ops_in_use(void) { return fx_tables[fx_path()]; }

static _Thread_local float *fx_buf = NULL;
static _Thread_local size_t fx_buf_size = 0;

float *fx_scratch(size_t floats) {
    if (floats > fx_buf_size) {
        free(fx_buf);
        fx_buf = (float *)aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
        fx_buf_size = fx_buf ? floats : 0;
    }
    return fx_buf;
}

/* 1 when built with OpenMP (products use torch's thread count), 0 when single-threaded. */
int fx_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* The path products take on this CPU (0 scalar, 1 AVX2+FMA, 2 AVX-512), after fx_set_isa's cap. */
int fx_isa_in_use(void) { return fx_path(); }

/* Cap the path (tests run each one on the same inputs); -1 lifts the cap. */
void fx_set_isa(int isa) { fx_force = isa; }

int fx_version(void) { return FX_VERSION; }
