/* Matrix products in the fixed order (see fx.h): the definition, packing, the register-blocked
 * micro-kernels (AVX-512: 8 rows x 32 columns of accumulators, AVX2+FMA: 6 x 16, scalar fmaf),
 * the batched GEMM, the fused MLP and the fused layer norm + GEMM. */
#include "fx.h"

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
void fx_pack(const fx_job *job, int nr, float *dst) {
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
 * One tile: rows i0..i0+mr-1 (row pointers clamped to valid rows), columns j0..j0+w-1 of panel bp;
 * each lane is the defining chain over k in order. */

void fx_tile_scalar(const fx_job *job, const float *bp, int nr, int i0, int mr, int j0, int w) {
    float acc[16];
    int K = job->K;
    for (int r = 0; r < mr; r++) {
        const float *a = job->A + (long)(i0 + r) * job->lda;
        for (int j = 0; j < w; j++) acc[j] = 0.0f;
        for (int k = 0; k < K; k++) {
            const float *b = bp + (long)k * nr;
            for (int j = 0; j < w; j++) acc[j] = fmaf(a[k], b[j], acc[j]);
        }
        float *c = job->C + (long)(i0 + r) * job->ldc + j0;
        for (int j = 0; j < w; j++) c[j] = fx_epilogue(acc[j], job->bias, j0 + j, c[j], job->flags);
    }
}

#if FX_X86
__attribute__((target("avx2,fma"))) void fx_tile_avx2(const fx_job *job, const float *bp, int nr, int i0, int mr,
                                                       int j0, int w) {
    (void)nr; /* 16 */
    enum { MR = 6 };
    const float *a[MR];
    for (int r = 0; r < MR; r++) a[r] = job->A + (long)(i0 + (r < mr ? r : mr - 1)) * job->lda;
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm256_setzero_ps();
    int K = job->K;
    for (int k = 0; k < K; k++) {
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
        _mm256_storeu_ps(t, c0[r]);
        _mm256_storeu_ps(t + 8, c1[r]);
        float *c = job->C + (long)(i0 + r) * job->ldc + j0;
        for (int j = 0; j < w; j++) c[j] = fx_epilogue(t[j], job->bias, j0 + j, c[j], job->flags);
    }
}

__attribute__((target("avx512f"))) void fx_tile_avx512(const fx_job *job, const float *bp, int nr, int i0, int mr,
                                                       int j0, int w) {
    (void)nr; /* 32 */
    enum { MR = FX_MR512 };
    const float *a[MR];
    for (int r = 0; r < MR; r++) a[r] = job->A + (long)(i0 + (r < mr ? r : mr - 1)) * job->lda;
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    int K = job->K;
    for (int k = 0; k < K; k++) {
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
    if (has_bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, job->bias + j0);
        bias1 = _mm512_maskz_loadu_ps(m1, job->bias + j0 + 16);
    }
    for (int r = 0; r < mr; r++) {
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
__attribute__((target("avx512f"))) void fx_rows_avx512(const fx_job *job) {
    int K = job->K;
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32((int)job->csb));
    __m512 zero = _mm512_setzero_ps();
    for (int i = 0; i < job->M; i++) {
        const float *a = job->A + (long)i * job->lda;
        for (int j0 = 0; j0 < job->N; j0 += 16) {
            int w = job->N - j0 < 16 ? job->N - j0 : 16;
            __mmask16 m = (__mmask16)(w >= 16 ? 0xFFFF : ((1u << w) - 1u));
            __m512 acc = zero;
            const float *b = job->B + (long)j0 * job->csb;
            for (int k = 0; k < K; k++) {
                __m512 x = job->csb == 1 ? _mm512_maskz_loadu_ps(m, b + (long)k * job->rsb)
                                         : _mm512_mask_i32gather_ps(zero, m, idx, b + (long)k * job->rsb, 4);
                acc = _mm512_fmadd_ps(_mm512_set1_ps(a[k]), x, acc);
            }
            float t[16];
            _mm512_storeu_ps(t, acc);
            float *c = job->C + (long)i * job->ldc + j0;
            for (int j = 0; j < w; j++) c[j] = fx_epilogue(t[j], job->bias, j0 + j, c[j], job->flags);
        }
    }
}

__attribute__((target("avx2,fma"))) void fx_rows_avx2(const fx_job *job) {
    int K = job->K;
    for (int i = 0; i < job->M; i++) {
        const float *a = job->A + (long)i * job->lda;
        for (int j0 = 0; j0 < job->N; j0 += 8) {
            int w = job->N - j0 < 8 ? job->N - j0 : 8;
            __m256 acc = _mm256_setzero_ps();
            const float *b = job->B + (long)j0 * job->csb;
            for (int k = 0; k < K; k++) {
                float x[8] = {0};
                for (int j = 0; j < w; j++) x[j] = b[(long)k * job->rsb + (long)j * job->csb];
                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(a + k), _mm256_loadu_ps(x), acc);
            }
            float t[8];
            _mm256_storeu_ps(t, acc);
            float *c = job->C + (long)i * job->ldc + j0;
            for (int j = 0; j < w; j++) c[j] = fx_epilogue(t[j], job->bias, j0 + j, c[j], job->flags);
        }
    }
}
#endif

/* ---------------------------------------------------------------- dispatch and threads */

/* ---------------------------------------------------------------- tiles, threads, entry points */

/* Tiles [t0, t1) of a job whose B is packed at bp: tile t = row block (t / panels), panel (t % panels):
 * a row block of A (mr x K) stays in L1 while the packed panels stream from L2. */
void fx_run_tiles(const fx_job *job, const float *bp, const fx_ops *ops, long t0, long t1) {
    int nr = ops->nr, mr = ops->mr;
    long panels = (job->N + nr - 1) / nr;
    for (long t = t0; t < t1; t++) {
        int p = (int)(t % panels), i0 = (int)(t / panels) * mr;
        int rows = job->M - i0 < mr ? job->M - i0 : mr;
        int j0 = p * nr, w = job->N - j0 < nr ? job->N - j0 : nr;
        ops->tile(job, bp + (long)p * job->K * nr, nr, i0, rows, j0, w);
    }
}

/* Whether M rows against an N-column B (column stride csb) take the unpacked rows path: one or two
 * rows (a single query's attention: packing B would cost more than the product), 32-bit offsets. */
static int fx_unpacked(const fx_ops *ops, int M, int N, long csb) {
    return ops->rows != NULL && M <= 2 && (long)N * csb < (1L << 31);
}

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
                    *c = fx_epilogue(0.0f, bias, j, *c, flags);
                }
        }
        return 0;
    }
    const fx_ops *ops = fx_ops_in_use();
    int nr = ops->nr, mr = ops->mr;
    if (bp == NULL && fx_unpacked(ops, M, N, csb)) {
        int parallel = threads > 1 && items >= 2 * threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
#else
        (void)parallel;
#endif
        for (long it = 0; it < items; it++) {
            fx_job job = {M,    N,   K,   A + (it / b1) * sa0 + (it % b1) * sa1, lda, B + (it / b1) * sb0 + (it % b1) * sb1,
                          rsb,  csb, bias, C + (it / b1) * sc0 + (it % b1) * sc1, ldc, flags};
            ops->rows(&job);
        }
        return 0;
    }
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
        fx_run_tiles(&job, bp + it * per_item, ops, t % tiles, t % tiles + 1);
    }
    return 0;
}

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
    const fx_ops *ops = fx_ops_in_use();
    int nr = ops->nr, mr = ops->mr;
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
            fx_ln_rows(ops, 0, rows, H, X + (long)i0 * ldx, ldx, lnw, lnb, eps, normed, H);
            y = normed, ld = H;
        }
        fx_job up = {rows, I, H, y, ld, NULL, 0, 0, b1, hid, I, relu ? FX_RELU : 0};
        fx_run_tiles(&up, p1, ops, 0, panels1);
        fx_job down = {rows, H, I, hid, I, NULL, 0, 0, b2, X + (long)i0 * ldx, ldx, FX_ACCUMULATE};
        fx_run_tiles(&down, p2, ops, 0, panels2);
    }
    return failed ? -1 : 0;
}

/* C = LN(X) @ B + bias (flags as fx_gemm's) with B packed once (bp): X (M x K) is normalised by
 * row block into the thread's buffer, then that block's tiles run over every panel; the (M x K)
 * normalised matrix never goes to memory. Same bits as fx_layernorm, then fx_gemm. */
int fx_ln_gemm(int M, int N, int K, const float *X, long ldx, const float *lnw, const float *lnb, float eps,
               const float *bp, const float *bias, float *C, long ldc, int flags, int threads) {
    if (M <= 0 || N <= 0 || K <= 0) return M <= 0 || N <= 0 ? 0 : -2;
    const fx_ops *ops = fx_ops_in_use();
    int nr = ops->nr, mr = ops->mr;
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
        fx_ln_rows(ops, 0, rows, K, X + (long)i0 * ldx, ldx, lnw, lnb, eps, normed, K);
        fx_job job = {rows, N, K, normed, K, NULL, 0, 0, bias, C + (long)i0 * ldc, ldc, flags};
        fx_run_tiles(&job, bp, ops, 0, panels);
    }
    return failed ? -1 : 0;
}

/* One product of the attention on this path: C (M x N, ldc) = A (M x K, lda) @ B (K x N by rsb, csb),
 * no bias; packs B into `panel` unless the unpacked rows path takes it. */
void fx_product(const fx_ops *ops, int M, int N, int K, const float *A, long lda, const float *B, long rsb, long csb,
                float *C, long ldc, float *panel) {
    fx_job job = {M, N, K, A, lda, B, rsb, csb, NULL, C, ldc, 0};
    if (fx_unpacked(ops, M, N, csb)) {
        ops->rows(&job);
        return;
    }
    fx_pack(&job, ops->nr, panel);
    long tiles = (long)((M + ops->mr - 1) / ops->mr) * ((N + ops->nr - 1) / ops->nr);
    fx_run_tiles(&job, panel, ops, 0, tiles);
}

/* Floats a packed (K, N) B takes on this CPU's path (fx_pack_b's dst). */
long fx_packed_size(int N, int K) {
    int nr = fx_ops_in_use()->nr;
    return (long)((N + nr - 1) / nr) * K * nr;
}

/* Pack a (K, N) B once (weights) for fx_gemm's bp; returns the panel width. */
int fx_pack_b(int N, int K, const float *B, long rsb, long csb, float *dst) {
    int nr = fx_ops_in_use()->nr;
    fx_job job = {0, N, K, NULL, 0, B, rsb, csb, NULL, NULL, 0, 0};
    fx_pack(&job, nr, dst);
    return nr;
}
