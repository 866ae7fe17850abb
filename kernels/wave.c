// wave.c: many independent matrix products in one pass over the thread pool.
//
// Decode runs dozens of small products per layer (every routed expert's gate, up and down
// matrices, the attention projections that share an input). One pool job per product pays
// a synchronisation and leaves threads idle while the last task of each product finishes;
// a wave puts every product's row blocks in one task list, so both cores stream weights
// from the first row to the last. Each output element is computed by the same register
// blocks as ck_matmul_auto, so a wave is bit-identical to running its products one by one.
#include <stdlib.h>
#include <string.h>
#include "internal.h"

// Weight bytes per task: big enough to amortise the claim and the prefetch ramp-up, small
// enough for both threads to finish together.
#define TASK_BYTES ((size_t)96 << 10)
#define TILE_ROWS 64
// Rows per task at least, for more than 8 tokens: a task streams all its tokens' x once, so a
// task of 4 rows × 1,024 tokens (what TASK_BYTES alone gave dsv4-tiny's experts) moved 1 MB of
// x for 2 MFLOP. Prefill of 4,096 tokens on dsv4-tiny, 2 threads, median of 3, alternating runs:
// 4 rows 1,518–2,078 tok/s, 64 rows 1,976–2,112, 128 rows 2,114–2,208, 256 rows 2,242–2,301;
// with this rule (at most a quarter of a product's rows on 2 threads) 1,944–2,093 → 2,070–2,348.
// The bench model's 512-token prefill did not move beyond its noise (130–160 tok/s either way).
#define BATCH_ROWS 128

typedef struct {
    const ck_product *p;
    const float *xp;  // x prepared for the product's kernel (see wants_permuted), or NULL
    int mode;         // wants_permuted of the product
    size_t row0, row1;
} wave_task;

typedef struct {
    wave_task *tasks;
} wave_job;

static void run_rows(const ck_product *p, const float *xp, int mode, size_t a, size_t b) {
    size_t rb = ck_row_bytes(p->dtype, p->K);
    // FP8/FP4 products of a few tokens take the task's rows in one call: they
    // prefetch rows ahead within a call, so tiles would leave every tile's first rows cold.
    int q = p->dtype == CK_DTYPE_F8E4M3 || p->dtype == CK_DTYPE_FP4E2M1;
    size_t tile = (q || (xp && mode < 3 && p->dtype != CK_DTYPE_BF16)) && p->T <= 8 ? b - a : TILE_ROWS;
    for (size_t r = a; r < b; r += tile) {
        size_t e = r + tile < b ? r + tile : b;
        const void *w = (const char *)p->w + r * rb;
        if (xp && mode == 5) {
            ck_scales s = *p->scales;
            s.row0 += r;
            ck_fp4x_matmul(xp, p->K, w, &s, e - r, p->y + r);
        } else if (xp && mode == 4 && (p->dtype == CK_DTYPE_F8E4M3 || p->dtype == CK_DTYPE_FP4E2M1)) {
            ck_scales s;
            if (p->scales) { s = *p->scales; s.row0 += r; }
            ck_avx2_matmul_scaled_prepared(xp, p->T, p->K, w, p->dtype, p->scales ? &s : NULL, e - r, p->y + r, p->ldy);
        } else if (xp && mode >= 3) {
            ck_avx2_matmul_prepared(xp, p->T, p->K, w, p->dtype, e - r, p->y + r, p->ldy);
        } else if (xp && p->dtype != CK_DTYPE_BF16) {
            ck_scales s;
            if (p->scales) { s = *p->scales; s.row0 += r; }
            ck_qlanes_matmul_permuted(xp, p->T, p->K, w, p->dtype, p->scales ? &s : NULL, e - r, p->y + r, p->ldy);
        } else if (xp) {
            ck_bf16_matmul_permuted(xp, p->T, p->K, w, e - r, p->y + r, p->ldy);
        } else if (p->scales) {
            ck_scales s = *p->scales;
            s.row0 += r;
            ck_matmul_scaled(p->x, p->ldx, p->T, p->K, w, p->dtype, &s, e - r, p->y + r, p->ldy);
        } else if (p->dtype == CK_DTYPE_F8E4M3 || p->dtype == CK_DTYPE_FP4E2M1) {
            ck_matmul_scaled(p->x, p->ldx, p->T, p->K, w, p->dtype, NULL, e - r, p->y + r, p->ldy);
        } else {
            ck_matmul(p->x, p->ldx, p->T, p->K, w, p->dtype, e - r, p->y + r, p->ldy);
        }
    }
}

// Which permuted x a product's kernel reads (0: plain x, 1: the BF16 lane order, also FP8's;
// 2: FP4's even/odd order; on AVX2 machines 3: BF16's even/odd order, 4: padded rows for F32,
// F16, FP8 and FP4 when x is not that layout already, 5: one FP4 token's x per scale exponent);
// x is prepared once per product, or shared with the one before.
static int wants_permuted(const ck_product *p, int avx512) {
    if (p->K == 0) return 0;
    if (!avx512) {
        if (ck_fp4x_applies(p->dtype, p->T, p->K, p->scales)) return 5;
        if (!ck_use_avx2()) return 0;
        if (p->dtype == CK_DTYPE_BF16) return 3;
        return ck_avx2_x_copied(p->ldx, p->T, p->K) ? 4 : 0;  // else every kernel reads x as it is
    }
    if (p->dtype == CK_DTYPE_BF16) return 1;
    if (!ck_qlanes_applies(p->dtype, p->K, p->scales)) return 0;
    return p->dtype == CK_DTYPE_FP4E2M1 ? 2 : 1;
}

static int same_input(const ck_product *a, const ck_product *b) {
    return a->x == b->x && a->T == b->T && a->ldx == b->ldx && a->K == b->K;
}

static size_t prepared_bytes(const ck_product *p, int mode) {
    return (mode == 5 ? ck_fp4x_floats(p->K) : p->T * ck_bf16_padded(p->K)) * sizeof(float) + 64;
}

static void wave_task_fn(void *ctx, int i) {
    const wave_task *t = &((const wave_job *)ctx)->tasks[i];
    run_rows(t->p, t->xp, t->mode, t->row0, t->row1);
}

void ck_matmul_many(const ck_product *products, size_t count) {
    if (count == 0) return;
    int bf16 = ck_use_avx512();
    // Permuted inputs for BF16 products; consecutive products with the same x share one.
    size_t xbytes = 0, ntasks = 0;
    int threads = ck_pool_threads();
    for (size_t i = 0; i < count; i++) {
        const ck_product *p = &products[i];
        if (p->T == 0 || p->N == 0) continue;
        if (wants_permuted(p, bf16) && !(i > 0 && wants_permuted(&products[i - 1], bf16) == wants_permuted(p, bf16) && same_input(&products[i - 1], p)))
            xbytes += prepared_bytes(p, wants_permuted(p, bf16));
    }
    size_t cap = 0;
    for (size_t i = 0; i < count; i++) {
        const ck_product *p = &products[i];
        if (p->T == 0 || p->N == 0) continue;
        size_t work = p->N * ck_row_bytes(p->dtype, p->K) * (p->T < 8 ? 1 : p->T / 8 + 1);
        cap += work / TASK_BYTES + 2;
    }
    cap += (size_t)threads * 2;
    wave_task *tasks = malloc(cap * sizeof(wave_task));
    // the calling thread's scratch, kept between waves: a fresh buffer of this size comes from
    // mmap, and faulting its pages in cost more than preparing x (main thread, every layer)
    char *xbuf = xbytes ? (char *)ck_thread_scratch(CK_SCRATCH_WAVE, (xbytes + 3) / 4) : NULL;
    size_t xoff = 0;
    const float *last_xp = NULL;
    // Rows per task: about TASK_BYTES of weights (scaled down when many tokens reuse each row, but
    // not below BATCH_ROWS), a multiple of 4 for the register blocks, and at least two tasks per thread in all.
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        const ck_product *p = &products[i];
        if (p->T && p->N) total += p->N * ck_row_bytes(p->dtype, p->K);
    }
    size_t target = TASK_BYTES;
    if (threads > 1 && total / target < (size_t)threads * 2) target = total / ((size_t)threads * 2) + 1;
    for (size_t i = 0; i < count; i++) {
        const ck_product *p = &products[i];
        if (p->T == 0 || p->N == 0) continue;
        if (p->K == 0) {
            for (size_t t = 0; t < p->T; t++) memset(p->y + t * p->ldy, 0, p->N * sizeof(float));
            continue;
        }
        const float *xp = NULL;
        if (wants_permuted(p, bf16)) {
            int shared = i > 0 && last_xp && wants_permuted(&products[i - 1], bf16) == wants_permuted(p, bf16) &&
                         same_input(&products[i - 1], p);
            if (!shared) {
                float *dst = (float *)(xbuf + xoff);
                xoff += prepared_bytes(p, wants_permuted(p, bf16));
                if (wants_permuted(p, bf16) == 5) ck_fp4x_prepare(p->x, p->K, p->scales, p->N, dst);
                else if (wants_permuted(p, bf16) >= 3) ck_avx2_prepare_x(p->x, p->ldx, p->T, p->K, p->dtype, dst);
                else if (p->dtype == CK_DTYPE_BF16) ck_bf16_permute_x(p->x, p->ldx, p->T, p->K, dst);
                else ck_qlanes_permute_x(p->dtype, p->x, p->ldx, p->T, p->K, dst);
                last_xp = dst;
            }
            xp = last_xp;
        } else {
            last_xp = NULL;
        }
        size_t rb = ck_row_bytes(p->dtype, p->K);
        size_t per = p->T > 8 ? target / (rb * (p->T / 8)) : target / rb;
        per = (per + 3) / 4 * 4;
        if (p->T > 8 && per < BATCH_ROWS) {  // but keep two tasks per thread for this product alone
            size_t spread = (p->N / ((size_t)threads * 2) + 3) / 4 * 4;
            per = spread < BATCH_ROWS ? (spread > per ? spread : per) : BATCH_ROWS;
        }
        if (per < 4) per = 4;
        for (size_t r = 0; r < p->N; r += per) {
            if (ntasks == cap) {
                cap *= 2;
                tasks = realloc(tasks, cap * sizeof(wave_task));
            }
            tasks[ntasks++] = (wave_task){p, xp, wants_permuted(p, bf16), r, r + per < p->N ? r + per : p->N};
        }
    }
    wave_job job = {tasks};
    if (threads <= 1) {
        for (size_t i = 0; i < ntasks; i++) wave_task_fn(&job, (int)i);
    } else {
        ck_pool_run((int)ntasks, wave_task_fn, &job);
    }
    free(tasks);
}
