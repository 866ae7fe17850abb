// indexer_shared.h: the machinery of the Lightning Indexer's fused top-k that every key format
// shares (indexer.c: fp32 tiles; indexer_lowp.c: bf16 and 8-bit tiles): the candidate lists
// with their thresholds, the plan of tasks (query blocks × key ranges) over the thread pool,
// the merge of a query's key ranges into its ordered k best, and the fp32 tile scorer over a
// vector type (bf16 tiles are widened to fp32 tiles for it).
//
// Selection: each (query, key range) keeps a buffer of candidates with a threshold, the
// score of the k-th best kept so far: a score enters only when it beats the threshold (later
// keys have larger ids, so an equal score never beats the k-th), and a full buffer is cut
// back to its k best by quickselect. Cost O(n) per query with a small constant, not
// O(n log k), and no n-sized scratch.
//
// Everything here is static: each including file gets its own copy (not visible to Swift).
#ifndef CK_INDEXER_SHARED_H
#define CK_INDEXER_SHARED_H
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define IDX_TILE CK_INDEXER_TILE

typedef struct {
    float s;
    int32_t i;
} cand;

static inline int cand_before(cand a, cand b) { return a.s > b.s || (a.s == b.s && a.i < b.i); }

static inline int cand_order(const void *pa, const void *pb) {
    cand a = *(const cand *)pa, b = *(const cand *)pb;
    return cand_before(a, b) ? -1 : (cand_before(b, a) ? 1 : 0);
}

// Moves the k best of c[0..n) (by cand_before) to c[0..k), in any order (Hoare quickselect,
// median of three).
static inline void cand_select(cand *c, size_t n, size_t k) {
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

static inline size_t idx_largest(const int32_t *v, size_t n) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m = (size_t)v[i] > m ? (size_t)v[i] : m;
    return m;
}

// A query that sees at most k entries takes them all, in order.
static inline int idx_takes_all(int32_t *out, size_t visible, size_t k) {
    if (visible > k) return 0;
    for (size_t s = 0; s < visible; s++) out[s] = (int32_t)s;
    return 1;
}

// The plan of one top-k call and its candidate lists: tasks are (query block, key range)
// pairs, task = block · segments + segment.
typedef struct {
    size_t T, k, cap, qblock;
    const int32_t *visible;
    size_t qblocks, segments, tiles_per_segment, tile_count;
    cand *pool;
    cand_list *lists;  // [T][segments]
} idx_sel;

static inline void idx_sel_init(idx_sel *s, size_t T, const int32_t *visible, size_t k, size_t qblock) {
    size_t max_visible = idx_largest(visible, T);
    *s = (idx_sel){.T = T, .k = k, .qblock = qblock, .visible = visible};
    s->cap = 4 * k < k + 256 ? k + 256 : 4 * k;
    s->tile_count = (max_visible + IDX_TILE - 1) / IDX_TILE;
    s->qblocks = (T + qblock - 1) / qblock;
    // Enough tasks for every thread; key ranges split only when the queries alone are too few.
    size_t want = 4 * (size_t)ck_pool_threads();
    s->segments = s->qblocks >= want || s->tile_count == 0 ? 1 : (want + s->qblocks - 1) / s->qblocks;
    if (s->segments > s->tile_count && s->tile_count > 0) s->segments = s->tile_count;
    s->tiles_per_segment = s->tile_count == 0 ? 0 : (s->tile_count + s->segments - 1) / s->segments;
    size_t lists = T * s->segments;
    s->pool = malloc((lists * s->cap + 1) * sizeof(cand));
    s->lists = malloc((lists + 1) * sizeof(cand_list));
    for (size_t i = 0; i < lists; i++) s->lists[i] = (cand_list){s->pool + i * s->cap, 0, -INFINITY};
}

static inline int idx_sel_tasks(const idx_sel *s) { return (int)(s->qblocks * s->segments); }

// A task's queries [t0, t1), key range (segment), tiles [a, b) and prefetch distance.
typedef struct {
    size_t t0, t1, seg, a, b, ahead;
} idx_range;

static inline idx_range idx_sel_range(const idx_sel *s, int task) {
    idx_range r;
    size_t qb = (size_t)task / s->segments;
    r.seg = (size_t)task % s->segments;
    r.t0 = qb * s->qblock;
    r.t1 = r.t0 + s->qblock < s->T ? r.t0 + s->qblock : s->T;
    r.a = r.seg * s->tiles_per_segment;
    r.b = r.a + s->tiles_per_segment < s->tile_count ? r.a + s->tiles_per_segment : s->tile_count;
    // Prefetch distance in tiles: a decode task (one or two queries) spends little time per
    // tile, and the engine's tiles lie two to a history page, so one tile ahead leaves it
    // waiting on memory (measured, 1M context, 8-bit keys: 2.7 ms per call at 1 ahead, 1.5 at
    // 16); a prefill block spends thousands of cycles per tile, and one ahead is enough.
    r.ahead = r.t1 - r.t0 <= 2 ? 16 : 1;
    return r;
}

// Whether query t scores the tile whose first entry is e0 (it sees more than k entries, and
// some of this tile's).
static inline int idx_sel_wants(const idx_sel *s, size_t t, size_t e0) {
    size_t vis = (size_t)s->visible[t];
    return vis > s->k && e0 < vis;
}

// Offers the scores `sc` of the tile whose first entry is e0 to query t's list of segment seg;
// `above` has bit x set when sc[x] beat the list's threshold as the scorer saw it (the others
// are not looked at; each one is checked again, as the threshold rises while pushing).
static inline void idx_sel_offer(const idx_sel *s, size_t t, size_t seg, size_t e0, const float *sc,
                                 unsigned above) {
    size_t vis = (size_t)s->visible[t];
    cand_list *l = &s->lists[t * s->segments + seg];
    if (vis - e0 < IDX_TILE) above &= (1u << (vis - e0)) - 1;
    for (; above != 0; above &= above - 1) {
        int x = __builtin_ctz(above);
        if (sc[x] > l->thr) cand_push(l, s->k, s->cap, sc[x], (int32_t)(e0 + (size_t)x));
    }
}

// The threshold of query t's list of segment seg.
static inline float idx_sel_threshold(const idx_sel *s, size_t t, size_t seg) {
    return s->lists[t * s->segments + seg].thr;
}

// Merges the segments of queries t0 ..< t1 and orders each one's k best into out [T][k].
static inline void idx_sel_finish_rows(const idx_sel *s, int32_t *out, size_t t0, size_t t1) {
    size_t k = s->k;
    for (size_t t = t0; t < t1; t++) {
        int32_t *o = out + t * k;
        size_t vis = (size_t)s->visible[t];
        if (idx_takes_all(o, vis, k)) continue;
        cand_list *first = &s->lists[t * s->segments];
        size_t n = first->n;
        for (size_t g = 1; g < s->segments; g++) {  // segments lie back to back in `pool`
            cand_list *l = &s->lists[t * s->segments + g];
            memmove(first->buf + n, l->buf, l->n * sizeof(cand));
            n += l->n;
        }
        if (n > k) cand_select(first->buf, n, k);
        qsort(first->buf, k, sizeof(cand), cand_order);
        for (size_t g = 0; g < k; g++) o[g] = first->buf[g].i;
    }
}

#define IDX_FINISH_ROWS 16
typedef struct {
    const idx_sel *s;
    int32_t *out;
} idx_finish_job;

static inline void idx_finish_task(void *ctx, int task) {
    const idx_finish_job *j = (const idx_finish_job *)ctx;
    size_t t0 = (size_t)task * IDX_FINISH_ROWS, t1 = t0 + IDX_FINISH_ROWS < j->s->T ? t0 + IDX_FINISH_ROWS : j->s->T;
    idx_sel_finish_rows(j->s, j->out, t0, t1);
}

// Merges each query's segments, orders its k best into out [T][k] (a prefill chunk's queries
// over the kernel threads: each query's picks do not depend on the split), and frees the lists.
static inline void idx_sel_finish(idx_sel *s, int32_t *out) {
    if (s->T >= 2 * IDX_FINISH_ROWS && ck_pool_threads() > 1) {
        idx_finish_job j = {s, out};
        ck_pool_run((int)((s->T + IDX_FINISH_ROWS - 1) / IDX_FINISH_ROWS), idx_finish_task, &j);
    } else {
        idx_sel_finish_rows(s, out, 0, s->T);
    }
    free(s->lists);
    free(s->pool);
}

// Prefetches part `part` of `parts` of a tile's `bytes` into L2 (the tile `ahead` of the one
// being scored: decode reads each tile once). A block of queries spreads the tile over its
// queries: 64 prefetches in a row (a 4 KB fp32 tile) fill the miss buffers and stall the core
// (measured: ~7% of a prefill block's time in the prefetch loop alone).
static inline void idx_prefetch_part(const void *tile, size_t bytes, size_t part, size_t parts) {
    size_t lines = (bytes + 63) / 64, per = (lines + parts - 1) / parts;
    size_t a = part * per, b = a + per < lines ? a + per : lines;
    for (size_t l = a; l < b; l++) _mm_prefetch((const char *)tile + l * 64, _MM_HINT_T1);
}

// MARK: - float tiles ([d][16] fp32 values; bf16 tiles are widened to these first)

#define IDX_QBLOCK 8  // queries that share each tile read

typedef struct {
    const float *q, *w;
    size_t H, d;
    float scale;
    const void *const *tiles;
    size_t tile_bytes;
    idx_sel sel;
} idx_fjob;

// The 16 scores of one query against one tile into `out`, and the mask of those above `thr`
// (GTMASK: a vector comparison's lane bits), for vectors VT of LANES lanes (the
// tile is IDX_TILE / LANES vectors wide) and HB heads at a time: per dimension, the tile row
// is loaded once (all its vectors) and each head's query value broadcast once, feeding
// HB × vectors FMAs into independent accumulators; then ReLU, scale and the head weight,
// heads in order. Each head's dot product runs over the dimensions in order, so any HB gives
// the same bits. AVX2 (8 lanes) takes 4 heads × 2 vectors: 6 loads per 8 FMAs and 8
// accumulators (the FMA latency × 2 pipes); 8 heads × 1 vector (9 loads per 8 FMAs) ran at 71 %
// of the FMA peak on an L1-resident tile on Zen 3, this at 95 %; 8 heads × 2 vectors spill.
// AVX-512 (16 lanes, 32 registers) keeps 8 heads × 1 vector.
#define IDX_TILE_SCORES(NAME, TARGET, VT, LANES, HB, LOAD, BCAST, FMA, MAX, MUL, ZERO, STORE, GTMASK) \
    TARGET static inline unsigned NAME(const float *q, const float *w, size_t H, size_t d, float scale,  \
                                       const float *tile, float thr, float *out) {                       \
        enum { NV = IDX_TILE / (LANES) };                                                                \
        VT score[NV];                                                                                    \
        for (int v = 0; v < NV; v++) score[v] = ZERO();                                                  \
        const VT sc = BCAST(&scale);                                                                     \
        for (size_t h0 = 0; h0 < H; h0 += (HB)) {                                                        \
            size_t hb = H - h0 < (HB) ? H - h0 : (HB);                                                   \
            const float *qh[HB];                                                                         \
            for (size_t x = 0; x < (HB); x++) qh[x] = q + (h0 + (x < hb ? x : 0)) * d;                   \
            VT acc[HB][NV];                                                                              \
            for (size_t x = 0; x < (HB); x++)                                                            \
                for (int v = 0; v < NV; v++) acc[x][v] = ZERO();                                         \
            for (size_t i = 0; i < d; i++) {                                                             \
                VT kv[NV];                                                                               \
                for (int v = 0; v < NV; v++) kv[v] = LOAD(tile + i * IDX_TILE + v * (LANES));            \
                for (size_t x = 0; x < (HB); x++) {                                                      \
                    VT qx = BCAST(qh[x] + i);                                                            \
                    for (int v = 0; v < NV; v++) acc[x][v] = FMA(qx, kv[v], acc[x][v]);                  \
                }                                                                                        \
            }                                                                                            \
            for (size_t x = 0; x < hb; x++) {                                                            \
                VT wx = BCAST(w + h0 + x);                                                               \
                for (int v = 0; v < NV; v++)                                                             \
                    score[v] = FMA(MUL(MAX(acc[x][v], ZERO()), sc), wx, score[v]);                       \
            }                                                                                            \
        }                                                                                                \
        unsigned above = 0;                                                                              \
        for (int v = 0; v < NV; v++) {                                                                   \
            STORE(out + v * (LANES), score[v]);                                                          \
            above |= (unsigned)GTMASK(score[v], BCAST(&thr)) << (v * (LANES));                           \
        }                                                                                                \
        return above;                                                                                    \
    }

// The vector helpers the float tile scorers take besides the intrinsics.
#define BCAST512(p) _mm512_set1_ps(*(p))
#define GTMASK512(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define GTMASK256(a, b) _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ))

// The fp32 tile scorers, in every file that includes this one.
IDX_TILE_SCORES(idx_scores_avx512, __attribute__((target("avx512f"))), __m512, 16, 8, _mm512_loadu_ps, BCAST512,
                _mm512_fmadd_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_setzero_ps, _mm512_storeu_ps, GTMASK512)
IDX_TILE_SCORES(idx_scores_avx2, __attribute__((target("avx2,fma"))), __m256, 8, 4, _mm256_loadu_ps,
                _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_max_ps, _mm256_mul_ps, _mm256_setzero_ps,
                _mm256_storeu_ps, GTMASK256)

// fp32 tiles are scored where they lie.
#define IDX_AS_FLOAT(tile, d, wide) ((const float *)(tile))

// One task: a block of IDX_QBLOCK queries against one segment of tiles (ctx: an idx_fjob), with
// the fp32 scorer SCORES. Tiles of another format are widened once per block by
// WIDEN(tile, d, wide) into `wide` (WIDE_FLOATS floats; exact, so the scores are the same bits
// as scoring the widened values in registers) and read from there by every query.
#define IDX_TASK(NAME, SCORES, TARGET, WIDEN, WIDE_FLOATS)                                               \
    TARGET static void NAME(void *ctx, int task) {                                                       \
        const idx_fjob *j = (const idx_fjob *)ctx;                                                       \
        idx_range r = idx_sel_range(&j->sel, task);                                                      \
        float sc[IDX_TILE];                                                                              \
        float wide[WIDE_FLOATS];                                                                         \
        for (size_t tile = r.a; tile < r.b; tile++) {                                                    \
            size_t e0 = tile * IDX_TILE;                                                                 \
            const void *next = tile + r.ahead < r.b ? j->tiles[tile + r.ahead] : NULL;                   \
            const float *keys = WIDEN(j->tiles[tile], j->d, wide);                                       \
            for (size_t t = r.t0; t < r.t1; t++) {                                                       \
                if (next) idx_prefetch_part(next, j->tile_bytes, t - r.t0, r.t1 - r.t0);                 \
                if (!idx_sel_wants(&j->sel, t, e0)) continue;                                            \
                unsigned above = SCORES(j->q + t * j->H * j->d, j->w + t * j->H, j->H, j->d, j->scale,   \
                                        keys, idx_sel_threshold(&j->sel, t, r.seg), sc);                 \
                if (above) idx_sel_offer(&j->sel, t, r.seg, e0, sc, above);                              \
            }                                                                                            \
        }                                                                                                \
        (void)wide;                                                                                      \
    }

// Runs a float-tile top-k with task `fn` (the caller has checked k > 0 and a vector path).
static inline void idx_float_topk(ck_task_fn fn, const float *q, const float *w, size_t T, size_t H, size_t d,
                                  float scale, const void *const *tiles, size_t elem_bytes,
                                  const int32_t *visible, size_t k, int32_t *out) {
    idx_fjob j = {.q = q, .w = w, .H = H, .d = d, .scale = scale, .tiles = tiles, .tile_bytes = d * IDX_TILE * elem_bytes};
    idx_sel_init(&j.sel, T, visible, k, IDX_QBLOCK);
    ck_pool_run(idx_sel_tasks(&j.sel), fn, &j);
    idx_sel_finish(&j.sel, out);
}

#endif
