// indexer_lowp.c: the Lightning Indexer's fused top-k over low-precision key tiles, for the
// bf16 and fp8 KV-cache modes (the keys are ~all of the indexer's memory traffic, and at
// depth its multiply-adds are the prefill's largest cost).
//
// bf16: tiles [d][16] of bf16, widened to fp32 (zero-extend, shift: exact) once per tile and
// block of queries into a [d][16] fp32 scratch tile, then scored by indexer.c's fp32 scorer
// (indexer_shared.h). Widening in registers per query cost 2 more vector operations per 8 FMAs
// (measured: 77 % of the FMA peak against 84 % for a 64-query block, Zen 3).
//
// 8-bit: every key entry is quantized symmetrically with its own scale (sk = max|k|/63,
// code = round(k/sk) in [-63, 63], stored as the byte code + 64), every (query, head) with
// its own (sq = max|q|/63, 7-bit codes), and the dot products are exact integers:
//
//   dot_h(t, s) = Σ_i q8_i · u8_i − 64 · Σ_i q8_i                     (= Σ_i q8_i · code_i)
//   score(t, s) = sk_s · Σ_h c_h · max(dot_h, 0)     c_h = w[t,h] · scale · sq_h, heads in order
//
// On AVX2 `vpmaddubsw` multiplies the unsigned key bytes by the signed query bytes and adds
// pairs into int16 (at most 2·127·63 = 16,002), two such results are added in int16 (at most
// 32,004 < 32,767: never wraps, which is why both sides have 7-bit codes), and `vpmaddwd`
// with ones adds those pairs into int32 lanes: 64 multiply-adds per three multiply-pipe
// instructions, against 8 per FMA. The tile stores 4 consecutive dimensions of an entry
// together ([d/4][16][4] bytes), so one 32-byte row is 8 entries × 4 dimensions, multiplied
// by the query's 4 bytes broadcast. The accumulators start at −64·Σq8 (the bias of the
// unsigned codes), so they end holding the exact dot. The float epilogue (ReLU, c_h by
// fmaf, heads in order, then × sk) is the scalar twin's operation for operation, so the
// picks are bit-identical to ck_ref_indexer_topk_i8. The selection, task plan and threading
// are indexer.c's (indexer_shared.h). AVX-512 machines with VNNI score a whole tile row
// (16 entries × 4 dimensions) per vpdpbusd; other AVX-512 machines run the AVX2 kernel;
// machines without AVX2 run the twins.
#include "indexer_shared.h"

// MARK: - bf16 tiles

static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest, ties to even (NaN not expected)
    return (uint16_t)(u >> 16);
}

static inline float bf16_value(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void ck_indexer_store_bf16(const float *key, size_t d, void *tile, size_t slot) {
    uint16_t *t = (uint16_t *)tile;
    for (size_t i = 0; i < d; i++) t[i * IDX_TILE + slot] = bf16_round(key[i]);
}

#define LOAD_BF16_AVX2(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define LOAD_BF16_AVX512(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
// A bf16 tile widened to fp32 (d × 16 floats at `wide`).
#define IDX_WIDEN_BF16(NAME, TARGET, LOAD, STORE, LANES)                                                 \
    TARGET static inline const float *NAME(const void *tile, size_t d, float *wide) {                   \
        for (size_t i = 0; i < d * IDX_TILE; i += (LANES))                                               \
            STORE(wide + i, LOAD((const uint16_t *)tile + i));                                           \
        return wide;                                                                                     \
    }
IDX_WIDEN_BF16(bf16_widen_avx512, __attribute__((target("avx512f"))), LOAD_BF16_AVX512, _mm512_storeu_ps, 16)
IDX_WIDEN_BF16(bf16_widen_avx2, __attribute__((target("avx2,fma"))), LOAD_BF16_AVX2, _mm256_storeu_ps, 8)
IDX_TASK(bf16_task_avx512, idx_scores_avx512, __attribute__((target("avx512f"))), bf16_widen_avx512, j->d * IDX_TILE)
IDX_TASK(bf16_task_avx2, idx_scores_avx2, __attribute__((target("avx2,fma"))), bf16_widen_avx2, j->d * IDX_TILE)

void ck_indexer_topk_bf16(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                          const void *const *tiles, const int32_t *visible, size_t k, int32_t *out) {
    ck_task_fn fn = ck_use_avx512() ? bf16_task_avx512 : (ck_use_avx2() ? bf16_task_avx2 : NULL);
    if (fn == NULL || k == 0) {
        ck_ref_indexer_topk_bf16(q, w, T, H, d, scale, tiles, visible, k, out);
        return;
    }
    idx_float_topk(fn, q, w, T, H, d, scale, tiles, sizeof(uint16_t), visible, k, out);
}

void ck_ref_indexer_topk_bf16(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                              const void *const *tiles, const int32_t *visible, size_t k, int32_t *out) {
    size_t count = (idx_largest(visible, T) + IDX_TILE - 1) / IDX_TILE;
    float *f = malloc((count * IDX_TILE * d + 1) * sizeof(float));
    const float **ft = malloc((count + 1) * sizeof(float *));
    for (size_t c = 0; c < count; c++) {
        const uint16_t *b = (const uint16_t *)tiles[c];
        for (size_t i = 0; i < IDX_TILE * d; i++) f[c * IDX_TILE * d + i] = bf16_value(b[i]);
        ft[c] = f + c * IDX_TILE * d;
    }
    ck_ref_indexer_topk(q, w, T, H, d, scale, ft, visible, k, out);
    free(ft);
    free(f);
}

// MARK: - 8-bit tiles

void ck_indexer_store_i8(const float *key, size_t d, void *tile, size_t slot) {
    float m = 0;
    for (size_t i = 0; i < d; i++) m = fmaxf(m, fabsf(key[i]));
    float sk = m / 63.0f;
    uint8_t *codes = (uint8_t *)tile;
    for (size_t i = 0; i < d; i++) {
        long c = sk > 0 ? lrintf(key[i] / sk) : 0;
        c = c > 63 ? 63 : (c < -63 ? -63 : c);
        codes[(i / 4) * 4 * IDX_TILE + slot * 4 + i % 4] = (uint8_t)(c + 64);
    }
    memcpy((char *)tile + d * IDX_TILE + slot * sizeof(float), &sk, sizeof(float));
}

// The queries as both paths read them: per (t, h) the 7-bit codes packed 4 to an int32 (the
// 4 dimensions of a tile row), the bias −64·Σq8 and the factor c = w·scale·sq.
typedef struct {
    int32_t *q4;    // [T][H][d/4]
    int32_t *bias;  // [T][H]
    float *c;       // [T][H]
} i8_queries;

static void i8_prepare(const float *q, const float *w, size_t T, size_t H, size_t d, float scale, i8_queries *p) {
    size_t G = d / 4;
    p->q4 = malloc((T * H * G + 1) * sizeof(int32_t));
    p->bias = malloc((T * H + 1) * sizeof(int32_t));
    p->c = malloc((T * H + 1) * sizeof(float));
    for (size_t th = 0; th < T * H; th++) {
        const float *x = q + th * d;
        float m = 0;
        for (size_t i = 0; i < d; i++) m = fmaxf(m, fabsf(x[i]));
        float sq = m / 63.0f;
        int32_t sum = 0;
        int8_t *codes = (int8_t *)(p->q4 + th * G);
        for (size_t i = 0; i < d; i++) {
            long c = sq > 0 ? lrintf(x[i] / sq) : 0;
            c = c > 63 ? 63 : (c < -63 ? -63 : c);
            codes[i] = (int8_t)c;
            sum += (int32_t)c;
        }
        p->bias[th] = -64 * sum;
        p->c[th] = w[th] * scale * sq;
    }
}

static void i8_release(i8_queries *p) {
    free(p->q4);
    free(p->bias);
    free(p->c);
}

void ck_ref_indexer_topk_i8(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                            const void *const *tiles, const int32_t *visible, size_t k, int32_t *out) {
    i8_queries p;
    i8_prepare(q, w, T, H, d, scale, &p);
    size_t G = d / 4;
    float *scores = malloc((idx_largest(visible, T) + 1) * sizeof(float));
    for (size_t t = 0; t < T; t++) {
        int32_t *o = out + t * k;
        size_t vis = (size_t)visible[t];
        if (idx_takes_all(o, vis, k)) continue;
        for (size_t s = 0; s < vis; s++) {
            const uint8_t *u = (const uint8_t *)tiles[s / IDX_TILE];
            size_t j = s % IDX_TILE;
            float acc = 0;
            for (size_t h = 0; h < H; h++) {
                const int8_t *q8 = (const int8_t *)(p.q4 + (t * H + h) * G);
                int32_t dot = p.bias[t * H + h];
                for (size_t i = 0; i < d; i++) dot += (int32_t)q8[i] * (int32_t)u[(i / 4) * 4 * IDX_TILE + j * 4 + i % 4];
                acc = fmaf((float)(dot > 0 ? dot : 0), p.c[t * H + h], acc);
            }
            float sk;
            memcpy(&sk, (const char *)u + d * IDX_TILE + j * sizeof(float), sizeof(float));
            scores[s] = acc * sk;
        }
        ck_ref_topk(scores, vis, k, o);
    }
    free(scores);
    i8_release(&p);
}

// Measured on Zen 3 (8 heads × 64): 16 queries per block beat 8 and 32 by ~10%; 2, 3 and 4
// heads per block are within noise (4 × 2 halves: 8 accumulators, no spills).
#define I8_QBLOCK 16  // queries that share each tile read
#define I8_HBLOCK 4   // heads accumulated in registers at once (× 2 halves of the tile)

typedef struct {
    i8_queries p;
    size_t H, G;
    const void *const *tiles;
    size_t tile_bytes;
    idx_sel sel;
} i8_job;

// hb heads (h0 ..< h0 + hb) of one query against one tile: hb × 2 int32 accumulators, each key
// row loaded once for all of them, then the float epilogue into the two halves' scores.
__attribute__((target("avx2,fma"), always_inline)) static inline void i8_heads_avx2(
    const int32_t *q4, const int32_t *bias, const float *c, size_t G, const uint8_t *tile, const int hb,
    __m256 *s0, __m256 *s1) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0[I8_HBLOCK], a1[I8_HBLOCK];
    for (int x = 0; x < hb; x++) a0[x] = a1[x] = _mm256_set1_epi32(bias[x]);
    size_t g = 0;
    for (; g + 2 <= G; g += 2) {  // two row groups summed in int16 (|sum| <= 32,004), then widened
        __m256i k0 = _mm256_loadu_si256((const __m256i *)(tile + g * 64));
        __m256i k1 = _mm256_loadu_si256((const __m256i *)(tile + g * 64 + 32));
        __m256i k2 = _mm256_loadu_si256((const __m256i *)(tile + g * 64 + 64));
        __m256i k3 = _mm256_loadu_si256((const __m256i *)(tile + g * 64 + 96));
        for (int x = 0; x < hb; x++) {
            __m256i qa = _mm256_set1_epi32(q4[x * G + g]), qb = _mm256_set1_epi32(q4[x * G + g + 1]);
            __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(k0, qa), _mm256_maddubs_epi16(k2, qb));
            __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(k1, qa), _mm256_maddubs_epi16(k3, qb));
            a0[x] = _mm256_add_epi32(a0[x], _mm256_madd_epi16(p0, ones));
            a1[x] = _mm256_add_epi32(a1[x], _mm256_madd_epi16(p1, ones));
        }
    }
    for (; g < G; g++) {
        __m256i k0 = _mm256_loadu_si256((const __m256i *)(tile + g * 64));
        __m256i k1 = _mm256_loadu_si256((const __m256i *)(tile + g * 64 + 32));
        for (int x = 0; x < hb; x++) {
            __m256i qb = _mm256_set1_epi32(q4[x * G + g]);
            a0[x] = _mm256_add_epi32(a0[x], _mm256_madd_epi16(_mm256_maddubs_epi16(k0, qb), ones));
            a1[x] = _mm256_add_epi32(a1[x], _mm256_madd_epi16(_mm256_maddubs_epi16(k1, qb), ones));
        }
    }
    const __m256i zero = _mm256_setzero_si256();
    for (int x = 0; x < hb; x++) {
        __m256 cx = _mm256_broadcast_ss(c + x);
        *s0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_max_epi32(a0[x], zero)), cx, *s0);
        *s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_max_epi32(a1[x], zero)), cx, *s1);
    }
}

// One query (its H heads at q4, bias, c) against one tile: the 16 scores into sc; returns the
// mask of those above thr.
__attribute__((target("avx2,fma"))) static inline int i8_tile_avx2(const int32_t *q4, const int32_t *bias,
                                                                   const float *c, size_t H, size_t G,
                                                                   const uint8_t *tile, float thr, float *sc) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t h = 0;
    for (; h + I8_HBLOCK <= H; h += I8_HBLOCK) i8_heads_avx2(q4 + h * G, bias + h, c + h, G, tile, I8_HBLOCK, &s0, &s1);
    switch (H - h) {
    case 3: i8_heads_avx2(q4 + h * G, bias + h, c + h, G, tile, 3, &s0, &s1); break;
    case 2: i8_heads_avx2(q4 + h * G, bias + h, c + h, G, tile, 2, &s0, &s1); break;
    case 1: i8_heads_avx2(q4 + h * G, bias + h, c + h, G, tile, 1, &s0, &s1); break;
    default: break;
    }
    const float *sk = (const float *)(tile + G * 4 * IDX_TILE);
    s0 = _mm256_mul_ps(s0, _mm256_loadu_ps(sk));
    s1 = _mm256_mul_ps(s1, _mm256_loadu_ps(sk + 8));
    _mm256_storeu_ps(sc, s0);
    _mm256_storeu_ps(sc + 8, s1);
    __m256 th = _mm256_set1_ps(thr);
    return _mm256_movemask_ps(_mm256_cmp_ps(s0, th, _CMP_GT_OQ)) |
           _mm256_movemask_ps(_mm256_cmp_ps(s1, th, _CMP_GT_OQ)) << 8;
}

// AVX-512 VNNI (Zen 4, Intel since Ice Lake): a 64-byte tile row is all 16 entries × 4
// dimensions, and vpdpbusd adds the four u8·s8 products of each entry straight into its int32
// lane (no int16 step, so the 7-bit bound is not needed here, only kept): 8 instructions per
// head and tile instead of AVX2's 24 multiply-pipe instructions. The same exact integer dots,
// and the same float epilogue, heads in order, so the picks are the AVX2 kernel's and the
// twin's bit for bit.
#define VNNI_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define I8_HBLOCK_512 8

// hb heads (h0 ..< h0 + hb) of one query against one tile, hb a constant at every call (a
// runtime count left a compare and branch per head and row in the loop: 40 % of the kernel's
// time at 1M context on Zen 4).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) static inline void i8_heads_vnni(
    const int32_t *q4, const int32_t *bias, const float *c, size_t G, const uint8_t *tile, const int hb, __m512 *s) {
    __m512i a[I8_HBLOCK_512];
    for (int x = 0; x < hb; x++) a[x] = _mm512_set1_epi32(bias[x]);
    for (size_t g = 0; g < G; g++) {
        __m512i row = _mm512_loadu_si512((const void *)(tile + g * 64));
        for (int x = 0; x < hb; x++) a[x] = _mm512_dpbusd_epi32(a[x], row, _mm512_set1_epi32(q4[x * G + g]));
    }
    const __m512i zero = _mm512_setzero_si512();
    for (int x = 0; x < hb; x++)
        *s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_max_epi32(a[x], zero)), _mm512_set1_ps(c[x]), *s);
}

VNNI_TGT static inline int i8_tile_vnni(const int32_t *q4, const int32_t *bias, const float *c, size_t H, size_t G,
                                        const uint8_t *tile, float thr, float *sc) {
    __m512 s = _mm512_setzero_ps();
    size_t h = 0;
    for (; h + I8_HBLOCK_512 <= H; h += I8_HBLOCK_512) i8_heads_vnni(q4 + h * G, bias + h, c + h, G, tile, I8_HBLOCK_512, &s);
    switch (H - h) {
    case 7: i8_heads_vnni(q4 + h * G, bias + h, c + h, G, tile, 7, &s); break;
    case 6: i8_heads_vnni(q4 + h * G, bias + h, c + h, G, tile, 6, &s); break;
    case 5: i8_heads_vnni(q4 + h * G, bias + h, c + h, G, tile, 5, &s); break;
    case 4: i8_heads_vnni(q4 + h * G, bias + h, c + h, G, tile, 4, &s); break;
    case 3: i8_heads_vnni(q4 + h * G, bias + h, c + h, G, tile, 3, &s); break;
    case 2: i8_heads_vnni(q4 + h * G, bias + h, c + h, G, tile, 2, &s); break;
    case 1: i8_heads_vnni(q4 + h * G, bias + h, c + h, G, tile, 1, &s); break;
    default: break;
    }
    s = _mm512_mul_ps(s, _mm512_loadu_ps((const float *)(tile + G * 4 * IDX_TILE)));
    _mm512_storeu_ps(sc, s);
    return (int)_mm512_cmp_ps_mask(s, _mm512_set1_ps(thr), _CMP_GT_OQ);
}

// One task of the 8-bit top-k (query block × key range) with the tile scorer TILE_FN.
#define I8_TASK(NAME, TARGET, TILE_FN)                                                                   \
    TARGET static void NAME(void *ctx, int task) {                                                      \
        const i8_job *j = (const i8_job *)ctx;                                                          \
        const idx_sel *s = &j->sel;                                                                     \
        idx_range r = idx_sel_range(s, task);                                                           \
        float sc[IDX_TILE];                                                                             \
        for (size_t tile = r.a; tile < r.b; tile++) {                                                   \
            size_t e0 = tile * IDX_TILE;                                                                \
            if (tile + r.ahead < r.b) idx_prefetch_part(j->tiles[tile + r.ahead], j->tile_bytes, 0, 1); \
            const uint8_t *u = (const uint8_t *)j->tiles[tile];                                         \
            for (size_t t = r.t0; t < r.t1; t++) {                                                      \
                if (!idx_sel_wants(s, t, e0)) continue;                                                 \
                float thr = idx_sel_threshold(s, t, r.seg);                                             \
                size_t th = t * j->H;                                                                   \
                unsigned above = (unsigned)TILE_FN(j->p.q4 + th * j->G, j->p.bias + th, j->p.c + th,    \
                                                   j->H, j->G, u, thr, sc);                             \
                if (above) idx_sel_offer(s, t, r.seg, e0, sc, above);                                   \
            }                                                                                           \
        }                                                                                               \
    }

I8_TASK(i8_task_vnni, VNNI_TGT, i8_tile_vnni)
I8_TASK(i8_task_avx2, __attribute__((target("avx2,fma"))), i8_tile_avx2)

void ck_indexer_topk_i8(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                        const void *const *tiles, const int32_t *visible, size_t k, int32_t *out) {
    // AVX-512 machines with VNNI run vpdpbusd; the others the AVX2 kernel (every AVX-512
    // machine has AVX2 and FMA).
    int vector = ck_use_avx512() || ck_use_avx2();
    if (!vector || k == 0) {
        ck_ref_indexer_topk_i8(q, w, T, H, d, scale, tiles, visible, k, out);
        return;
    }
    ck_task_fn fn = ck_use_avx512() && (ck_cpu_features() & CK_CPU_AVX512VNNI) ? i8_task_vnni : i8_task_avx2;
    i8_job j = {.H = H, .G = d / 4, .tiles = tiles, .tile_bytes = CK_INDEXER_TILE_I8_BYTES(d)};
    i8_prepare(q, w, T, H, d, scale, &j.p);
    idx_sel_init(&j.sel, T, visible, k, I8_QBLOCK);
    ck_pool_run(idx_sel_tasks(&j.sel), fn, &j);
    idx_sel_finish(&j.sel, out);
    i8_release(&j.p);
}
