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
// Selection (a threshold per query and key range, quickselect when a buffer fills), the
// task plan and the tile scorer are shared with the bf16 and 8-bit tiles (indexer_shared.h).
//
// One source (a macro over the vector type, indexer_shared.h), compiled for AVX-512 (16 lanes,
// 8 heads at a time) and AVX2+FMA (8 lanes: a tile is two vectors, 4 heads at a time), and a
// scalar twin (ck_ref_indexer_topk) built on ck_ref_indexer_scores and ck_ref_topk. The picks
// are the same bits for any head block: each head's dot runs over the dimensions in order, and
// the head-weighted sum over the heads in order.
#include "indexer_shared.h"

IDX_TASK(task_avx512, idx_scores_avx512, __attribute__((target("avx512f"))), IDX_AS_FLOAT, 1)
IDX_TASK(task_avx2, idx_scores_avx2, __attribute__((target("avx2,fma"))), IDX_AS_FLOAT, 1)

void ck_indexer_topk(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                     const float *const *tiles, const int32_t *visible, size_t k, int32_t *out) {
    ck_task_fn fn = ck_use_avx512() ? task_avx512 : (ck_use_avx2() ? task_avx2 : NULL);
    if (fn == NULL || k == 0) {
        ck_ref_indexer_topk(q, w, T, H, d, scale, tiles, visible, k, out);
        return;
    }
    idx_float_topk(fn, q, w, T, H, d, scale, (const void *const *)tiles, sizeof(float), visible, k, out);
}

void ck_ref_indexer_topk(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                         const float *const *tiles, const int32_t *visible, size_t k, int32_t *out) {
    size_t max_visible = idx_largest(visible, T);
    // Gather the keys back into rows and score them the plain way.
    float *rows = malloc((max_visible * d + 1) * sizeof(float));
    const float **keys = malloc((max_visible + 1) * sizeof(float *));
    for (size_t s = 0; s < max_visible; s++) {
        const float *tile = tiles[s / IDX_TILE];
        for (size_t i = 0; i < d; i++) rows[s * d + i] = tile[i * IDX_TILE + s % IDX_TILE];
        keys[s] = rows + s * d;
    }
    float *scores = malloc((max_visible + 1) * sizeof(float));
    for (size_t t = 0; t < T; t++) {
        int32_t *o = out + t * k;
        size_t vis = (size_t)visible[t];
        if (idx_takes_all(o, vis, k)) continue;
        ck_ref_indexer_scores(q + t * H * d, H, d, w + t * H, scale, keys, vis, scores);
        ck_ref_topk(scores, vis, k, o);
    }
    free(scores);
    free(keys);
    free(rows);
}
