// parallel.c: the matrix product the model calls. Splits y = x · Wᵀ into tiles that keep a
// block of weight rows in cache while every token passes over it, and spreads the tiles'
// output features over the kernel thread pool (decode is bandwidth bound: every thread must
// stream its own share of the weights).
//
// Every output element is computed by ck_matmul with the same arithmetic whatever the tile
// shapes, thread count or number of tokens, so results are bit-identical between batch
// compositions (a sequence's logits do not depend on what else is in the batch).
#include <stdlib.h>
#include "internal.h"

// Weight rows per cache tile: 64 rows × K ≤ 4096 BF16 = 512 KB, within L2.
#define TILE_ROWS 64
// Products smaller than this many multiply-adds run on the calling thread alone (a pool
// job costs a few microseconds, about what one core needs to stream 64 KB).
#define PARALLEL_MIN_WORK ((size_t)1 << 16)
#define MM_TASK_BYTES ((long)256 << 10)

typedef struct {
    ck_rows_fn fn;
    const float *x;
    size_t ldx, T, K, ldo, per;
    ck_dtype dtype;
    float *out;
} rows_job;

static void rows_task(void *ctx, int task) {
    const rows_job *j = (const rows_job *)ctx;
    size_t a = (size_t)task * j->per, b = a + j->per < j->T ? a + j->per : j->T;
    j->fn(j->x + a * j->ldx, j->ldx, b - a, j->K, j->dtype, j->out + a * j->ldo);
}

void ck_rows_parallel(ck_rows_fn fn, const float *x, size_t ldx, size_t T, size_t K, ck_dtype dtype, size_t ldo,
                      float *out) {
    if (T * K < 32768 || ck_pool_threads() < 2) {
        fn(x, ldx, T, K, dtype, out);
        return;
    }
    size_t per = (16384 + K - 1) / K;
    rows_job j = {fn, x, ldx, T, K, ldo, per, dtype, out};
    ck_pool_run((int)((T + per - 1) / per), rows_task, &j);
}

static size_t element_bytes(ck_dtype dtype) { return dtype == CK_DTYPE_F32 ? 4 : 2; }

// `xp` (may be NULL) is x already prepared: permuted for the AVX-512 BF16 kernel, or for
// the AVX2 products when `avx2`.
static void tiled(const float *x, const float *xp, int avx2, size_t ldx, size_t T, size_t K, const void *w,
                  ck_dtype dtype, size_t n0, size_t n1, float *y, size_t ldy) {
    for (size_t a = n0; a < n1; a += TILE_ROWS) {
        size_t b = a + TILE_ROWS < n1 ? a + TILE_ROWS : n1;
        const void *wt = (const char *)w + a * K * element_bytes(dtype);
        if (xp && avx2) ck_avx2_matmul_prepared(xp, T, K, wt, dtype, b - a, y + a, ldy);
        else if (xp) ck_bf16_matmul_permuted(xp, T, K, wt, b - a, y + a, ldy);
        else ck_matmul(x, ldx, T, K, wt, dtype, b - a, y + a, ldy);
    }
}

typedef struct {
    const float *x;
    const float *xp;
    int avx2;
    size_t ldx, T, K;
    const void *w;
    ck_dtype dtype;
    size_t N;
    float *y;
    size_t ldy;
    size_t rows_per_task;
} mm_job;

static void mm_task(void *ctx, int task) {
    const mm_job *j = (const mm_job *)ctx;
    size_t n0 = (size_t)task * j->rows_per_task;
    if (n0 >= j->N) return;
    size_t n1 = n0 + j->rows_per_task < j->N ? n0 + j->rows_per_task : j->N;
    tiled(j->x, j->xp, j->avx2, j->ldx, j->T, j->K, j->w, j->dtype, n0, n1, j->y, j->ldy);
}

void ck_matmul_auto(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
                    float *y, size_t ldy) {
    if (T == 0 || N == 0) return;
    float *xp = NULL;
    int avx2 = K > 0 && dtype != CK_DTYPE_F8E4M3 && dtype != CK_DTYPE_FP4E2M1 && ck_use_avx2();
    if (dtype == CK_DTYPE_BF16 && K > 0 && ck_use_avx512()) {
        xp = malloc(T * ck_bf16_padded(K) * sizeof(float) + 64);
        ck_bf16_permute_x(x, ldx, T, K, xp);
    } else if (avx2 && (dtype == CK_DTYPE_BF16 || ck_avx2_x_copied(ldx, T, K))) {
        xp = malloc(T * ck_avx2_padded(K) * sizeof(float) + 64);
        ck_avx2_prepare_x(x, ldx, T, K, dtype, xp);
    }
    int threads = ck_pool_threads();
    if (threads <= 1 || T * K * N < PARALLEL_MIN_WORK || N < 8) {
        tiled(x, xp, avx2, ldx, T, K, w, dtype, 0, N, y, ldy);
        free(xp);
        return;
    }
    // Tasks of about MM_TASK_BYTES of weights (fewer bytes when many tokens reuse each row),
    // and at least two per thread: a large product (the vocabulary projection reads 66 MB per
    // decoded token on dsv4-tiny) in a few big tasks leaves one thread idle for most of a
    // task at its end. Task edges on 4-row boundaries keep the register blocks whole.
    static long task_bytes = -1;
    if (task_bytes < 0) task_bytes = getenv("DSV4_MM_TASK_BYTES") ? atol(getenv("DSV4_MM_TASK_BYTES")) : MM_TASK_BYTES;
    size_t rb = ck_row_bytes(dtype, K) * (T < 8 ? 1 : T / 8 + 1);
    size_t rows = rb ? (size_t)task_bytes / rb : N;
    size_t most = (N + (size_t)threads * 2 - 1) / ((size_t)threads * 2);
    if (task_bytes == 0 || rows > most) rows = most;
    rows = rows < 4 ? 4 : (rows + 3) / 4 * 4;
    mm_job job = {x, xp, avx2, ldx, T, K, w, dtype, N, y, ldy, rows};
    ck_pool_run((int)((N + rows - 1) / rows), mm_task, &job);
    free(xp);
}

// MARK: - quantized weights (FP8 / FP4 with block scales)

typedef struct {
    ck_product p;
    size_t rows_per_task;
    const float *xp;  // x in the lane order of lane-ordered FP8/FP4 products (or NULL)
} scaled_job;

static void scaled_task(void *ctx, int task) {
    const scaled_job *j = (const scaled_job *)ctx;
    const ck_product *p = &j->p;
    size_t n0 = (size_t)task * j->rows_per_task;
    if (n0 >= p->N) return;
    size_t n1 = n0 + j->rows_per_task < p->N ? n0 + j->rows_per_task : p->N;
    ck_scales s;
    const ck_scales *sp = NULL;
    if (p->scales) {
        s = *p->scales;
        s.row0 += n0;
        sp = &s;
    }
    const void *wp = (const char *)p->w + n0 * ck_row_bytes(p->dtype, p->K);
    if (j->xp) ck_qlanes_matmul_permuted(j->xp, p->T, p->K, wp, p->dtype, sp, n1 - n0, p->y + n0, p->ldy);
    else ck_matmul_scaled(p->x, p->ldx, p->T, p->K, wp, p->dtype, sp, n1 - n0, p->y + n0, p->ldy);
}

void ck_matmul_scaled_auto(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                           const ck_scales *scales, size_t N, float *y, size_t ldy) {
    if (T == 0 || N == 0) return;
    int threads = ck_pool_threads();
    if (threads <= 1 || T * K * N < PARALLEL_MIN_WORK || N < 8) {
        ck_matmul_scaled(x, ldx, T, K, w, dtype, scales, N, y, ldy);
        return;
    }
    size_t tasks = (size_t)threads * 2;
    size_t rows = (N + tasks - 1) / tasks;
    rows = (rows + 3) / 4 * 4;
    float *xp = NULL;
    if (ck_qlanes_applies(dtype, K, scales)) {
        xp = malloc(T * K * sizeof(float) + 64);
        ck_qlanes_permute_x(dtype, x, ldx, T, K, xp);
    }
    scaled_job job = {{x, ldx, T, K, w, dtype, scales, N, y, ldy}, rows, xp};
    ck_pool_run((int)((N + rows - 1) / rows), scaled_task, &job);
    free(xp);
}
