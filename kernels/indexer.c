// indexer.c: the Lightning Indexer's top-k for a block of queries at once (prefill chunks and
// decode), fused: scores, the causal bound of each query, ReLU, the head-weighted sum and a
// threshold selection, without ever holding a query's whole score row.
//
//   score(t, s) = Σ_h max(q_t,h · key_s, 0) · scale · w_t,h         (heads in order)
//   out[t]      = the k best s < visible[t] (score descending, equal scores: lower s first)
//
// Keys are stored in tiles of CK_INDEXER_TILE entries, dimension-major ([d][16]: dimension i
// of the tile's entry j at i·16 + j), so one tile is a [d × 16] block that every query of a
// block reads as 16 lanes: no horizontal sums, and each tile is read from memory once per
// block of queries instead of once per query (see ck_indexer_topk in ckernels.h).
//
// Selection: each (query, key range) keeps a buffer of candidates with a threshold, the
// score of the k-th best kept so far: a score enters only when it beats the threshold (later
// keys have larger ids, so an equal score never beats the k-th), and a full buffer is cut
// back to its k best by quickselect. Cost O(n) per query with a small constant, not
// O(n log k), and no n-sized scratch.
//
// One source (a macro over the vector type), compiled for AVX-512 (16 lanes) and AVX2+FMA
// (8 lanes, a tile in two halves), and a scalar twin (ck_ref_indexer_topk) built on
// ck_ref_indexer_scores and ck_ref_topk.
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define TILE CK_INDEXER_TILE
#define QBLOCK 8   // queries that share each tile read
#define HBLOCK 8   // heads accumulated in registers at once

typedef struct {
    float s;
    int32_t i;
} cand;

static inline int cand_before(cand a, cand b) { return a.s > b.s || (a.s == b.s && a.i < b.i); }

static int cand_order(const void *pa, const void *pb) {
    cand a = *(const cand *)pa, b = *(const cand *)pb;
    return cand_before(a, b) ? -1 : (cand_before(b, a) ? 1 : 0);
}

// Moves the k best of c[0..n) (by cand_before) to c[0..k), in any order (Hoare quickselect,
// median of three).
static void cand_select(cand *c, size_t n, size_t k) {
    size_t lo = 0, hi = n;  // the k-th lies in [lo, hi)
    while (hi - lo > 1) {
        // The lower middle: with two elements the pivot is then never the last one alone,
        // so both sides of every partition are non-empty.
        size_t mid = lo + (hi - lo - 1) / 2;
        cand a = c[lo], b = c[mid], d = c[hi - 1], p;
        if (cand_before(a, b)) p = cand_before(b, d) ? b : (cand_before(a, d) ? d : a);
        else p = cand_before(a, d) ? a : (cand_before(b, d) ? d : b);
        size_t i = lo, j = hi - 1;
        for (;;) {
            while (cand_before(c[i], p)) i++;
            while (cand_before(p, c[j])) j--;
            if (i >= j) break;
            cand t = c[i]; c[i] = c[j]; c[j] = t;
            i++; j--;
        }
        // [lo, j] are not after p, [j+1, hi) not before p
        if (k - 1 <= j) hi = j + 1;
        else lo = j + 1;
    }
}

typedef struct {
    cand *buf;
    size_t n;
    float thr;
} cand_list;

static inline void cand_push(cand_list *l, size_t k, size_t cap, float s, int32_t i) {
    if (l->n == cap) {
        cand_select(l->buf, l->n, k);
        l->n = k;
        float t = l->buf[0].s;
        for (size_t j = 1; j < k; j++) t = l->buf[j].s < t ? l->buf[j].s : t;
        l->thr = t;
    }
    l->buf[l->n++] = (cand){s, i};
}

typedef struct {
    const float *q, *w;
    size_t T, H, d, k, cap;
    float scale;
    const float *const *tiles;
    const int32_t *visible;
    size_t qblocks, segments, tiles_per_segment, tile_count;
    cand_list *lists;  // [T][segments]
} idx_job;

// The scores of one query against one tile, lanes [lo, lo + LANES), into `out`: HBLOCK heads'
// dot products accumulate in registers (one tile row load feeds HBLOCK FMAs with the query
// value broadcast from memory), then ReLU, scale and the head weight, heads in order.
#define IDX_TILE_SCORES(NAME, TARGET, VT, LOAD, BCAST, FMA, MAX, MUL, ZERO, STORE)                      \
    TARGET static inline void NAME(const float *q, const float *w, size_t H, size_t d, float scale,      \
                                   const float *tile, size_t lo, float *out) {                           \
        VT score = ZERO();                                                                               \
        for (size_t h0 = 0; h0 < H; h0 += HBLOCK) {                                                      \
            size_t hb = H - h0 < HBLOCK ? H - h0 : HBLOCK;                                               \
            const float *qh[HBLOCK];                                                                     \
            for (size_t x = 0; x < HBLOCK; x++) qh[x] = q + (h0 + (x < hb ? x : 0)) * d;                 \
            VT acc[HBLOCK];                                                                              \
            for (size_t x = 0; x < HBLOCK; x++) acc[x] = ZERO();                                         \
            for (size_t i = 0; i < d; i++) {                                                             \
                VT kv = LOAD(tile + i * TILE + lo);                                                      \
                for (size_t x = 0; x < HBLOCK; x++) acc[x] = FMA(BCAST(qh[x] + i), kv, acc[x]);          \
            }                                                                                            \
            VT sc = BCAST(&scale);                                                                       \
            for (size_t x = 0; x < hb; x++)                                                              \
                score = FMA(MUL(MAX(acc[x], ZERO()), sc), BCAST(w + h0 + x), score);                     \
        }                                                                                                \
        STORE(out, score);                                                                               \
    }

#define BCAST512(p) _mm512_set1_ps(*(p))
IDX_TILE_SCORES(tile_scores_avx512, __attribute__((target("avx512f"))), __m512, _mm512_loadu_ps, BCAST512,
                _mm512_fmadd_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_setzero_ps, _mm512_storeu_ps)
IDX_TILE_SCORES(tile_scores_avx2, __attribute__((target("avx2,fma"))), __m256, _mm256_loadu_ps, _mm256_broadcast_ss,
                _mm256_fmadd_ps, _mm256_max_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps)

// One task: a block of QBLOCK queries against one segment of tiles.
#define IDX_TASK(NAME, SCORES, TARGET, LANES)                                                            \
    TARGET static void NAME(void *ctx, int task) {                                                       \
        const idx_job *j = (const idx_job *)ctx;                                                         \
        size_t qb = (size_t)task / j->segments, seg = (size_t)task % j->segments;                        \
        size_t t0 = qb * QBLOCK, t1 = t0 + QBLOCK < j->T ? t0 + QBLOCK : j->T;                           \
        size_t a = seg * j->tiles_per_segment;                                                           \
        size_t b = a + j->tiles_per_segment < j->tile_count ? a + j->tiles_per_segment : j->tile_count;  \
        float sc[TILE];                                                                                  \
        size_t tile_bytes = j->d * TILE * sizeof(float);                                                 \
        for (size_t tile = a; tile < b; tile++) {                                                        \
            size_t e0 = tile * TILE;                                                                     \
            /* The next tile into L2 while this one is scored (decode reads each tile once). */         \
            if (tile + 1 < b)                                                                            \
                for (size_t off = 0; off < tile_bytes; off += 64)                                        \
                    _mm_prefetch((const char *)j->tiles[tile + 1] + off, _MM_HINT_T1);                   \
            for (size_t t = t0; t < t1; t++) {                                                           \
                size_t vis = (size_t)j->visible[t];                                                      \
                if (vis <= j->k || e0 >= vis) continue;                                                  \
                for (size_t lo = 0; lo < TILE; lo += LANES)                                              \
                    SCORES(j->q + t * j->H * j->d, j->w + t * j->H, j->H, j->d, j->scale, j->tiles[tile], lo, sc + lo); \
                cand_list *l = &j->lists[t * j->segments + seg];                                         \
                size_t n = vis - e0 < TILE ? vis - e0 : TILE;                                            \
                for (size_t x = 0; x < n; x++)                                                           \
                    if (sc[x] > l->thr) cand_push(l, j->k, j->cap, sc[x], (int32_t)(e0 + x));            \
            }                                                                                            \
        }                                                                                                \
    }

IDX_TASK(task_avx512, tile_scores_avx512, __attribute__((target("avx512f"))), 16)
IDX_TASK(task_avx2, tile_scores_avx2, __attribute__((target("avx2,fma"))), 8)

static size_t largest(const int32_t *v, size_t n) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m = (size_t)v[i] > m ? (size_t)v[i] : m;
    return m;
}

// A query that sees at most k entries takes them all, in order.
static int takes_all(int32_t *out, size_t visible, size_t k) {
    if (visible > k) return 0;
    for (size_t s = 0; s < visible; s++) out[s] = (int32_t)s;
    return 1;
}

void ck_indexer_topk(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                     const float *const *tiles, const int32_t *visible, size_t k, int32_t *out) {
    ck_task_fn fn = ck_use_avx512() ? task_avx512 : (ck_use_avx2() ? task_avx2 : NULL);
    if (fn == NULL || k == 0) {
        ck_ref_indexer_topk(q, w, T, H, d, scale, tiles, visible, k, out);
        return;
    }
    size_t max_visible = largest(visible, T);
    idx_job j = {.q = q, .w = w, .T = T, .H = H, .d = d, .k = k, .scale = scale, .tiles = tiles, .visible = visible};
    j.cap = 4 * k < k + 256 ? k + 256 : 4 * k;
    j.tile_count = (max_visible + TILE - 1) / TILE;
    j.qblocks = (T + QBLOCK - 1) / QBLOCK;
    // Enough tasks for every thread; key ranges split only when the queries alone are too few.
    size_t want = 4 * (size_t)ck_pool_threads();
    j.segments = j.qblocks >= want || j.tile_count == 0 ? 1 : (want + j.qblocks - 1) / j.qblocks;
    if (j.segments > j.tile_count && j.tile_count > 0) j.segments = j.tile_count;
    j.tiles_per_segment = j.tile_count == 0 ? 0 : (j.tile_count + j.segments - 1) / j.segments;
    size_t lists = T * j.segments;
    cand *pool = malloc((lists * j.cap + 1) * sizeof(cand));
    j.lists = malloc(lists * sizeof(cand_list));
    for (size_t i = 0; i < lists; i++) j.lists[i] = (cand_list){pool + i * j.cap, 0, -INFINITY};
    ck_pool_run((int)(j.qblocks * j.segments), fn, &j);

    // Merge each query's segments and order its k best.
    for (size_t t = 0; t < T; t++) {
        int32_t *o = out + t * k;
        size_t vis = (size_t)visible[t];
        if (takes_all(o, vis, k)) continue;
        cand_list *first = &j.lists[t * j.segments];
        size_t n = first->n;
        for (size_t s = 1; s < j.segments; s++) {  // segments lie back to back in `pool`
            cand_list *l = &j.lists[t * j.segments + s];
            memmove(first->buf + n, l->buf, l->n * sizeof(cand));
            n += l->n;
        }
        if (n > k) cand_select(first->buf, n, k);
        qsort(first->buf, k, sizeof(cand), cand_order);
        for (size_t s = 0; s < k; s++) o[s] = first->buf[s].i;
    }
    free(j.lists);
    free(pool);
}

void ck_ref_indexer_topk(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                         const float *const *tiles, const int32_t *visible, size_t k, int32_t *out) {
    size_t max_visible = largest(visible, T);
    // Gather the keys back into rows and score them the plain way.
    float *rows = malloc((max_visible * d + 1) * sizeof(float));
    const float **keys = malloc((max_visible + 1) * sizeof(float *));
    for (size_t s = 0; s < max_visible; s++) {
        const float *tile = tiles[s / TILE];
        for (size_t i = 0; i < d; i++) rows[s * d + i] = tile[i * TILE + s % TILE];
        keys[s] = rows + s * d;
    }
    float *scores = malloc((max_visible + 1) * sizeof(float));
    for (size_t t = 0; t < T; t++) {
        int32_t *o = out + t * k;
        size_t vis = (size_t)visible[t];
        if (takes_all(o, vis, k)) continue;
        ck_ref_indexer_scores(q + t * H * d, H, d, w + t * H, scale, keys, vis, scores);
        ck_ref_topk(scores, vis, k, o);
    }
    free(scores);
    free(keys);
    free(rows);
}
