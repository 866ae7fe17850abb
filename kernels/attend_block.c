// attend_block.c: attention of a block of queries over one shared list of keys (V = K), flash-
// attention style: each key is read once per block of queries instead of once per query.
//
//   query t sees keys [r0, r1) ∪ [r2, r3)   (ranges[4t ..< 4t+4], first range first)
//   s[t,h][k] = scale · q[t,h] · key_k,   M = max(sink_h, max_k s),
//   out[t,h]  = Σ_k exp(s − M) · key_k / (Σ_k exp(s − M) + exp(sink_h − M))
//
// A task takes a block of queries, all heads of each: R = queries × heads rows (about ROWS),
// padded to whole vectors. The block's query rows are packed once, transposed and scaled, as
// Qt [d][Rp]; then it walks the union of the block's ranges in key blocks of at most KB keys
// (a key block may straddle ranges: keys are gathered pointers) and for each
//   - scores S [kb][Rp] = Kᵀ·Qt (a key broadcast against row vectors: 6 keys × 2 row
//     vectors, or 12 × 1, in registers over d),
//   - masks (−inf) the keys a query does not see,
//   - online softmax per row, vectorised across rows: running max m, rescale α = e^(m−m'),
//     P = e^(S − m') (ck_exp256), running sum l ← l·α + Σ P,
//   - O [d][Rp] ← O·α + Σ_k key_k ⊗ P[k] (a key value broadcast against row vectors: 6 dims ×
//     2 row vectors, or 12 × 1, in registers over the block's keys),
// and finally writes out = O / l per row. The sink enters as the initial state: m = sink,
// l = 1. Query blocks are the pool's tasks; when they are too few for the threads (decode),
// the union of keys is cut into segments as well, and the per-segment (m, l, O) are merged.
//
// AVX-512 machines run the same AVX2+FMA code (8 lanes); the scalar twin gathers each
// query's keys and calls ck_ref_attend.
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define ROWS 32   // target rows (queries × heads) per query block
#define KB 60     // keys per key block at most (a multiple of KPAD)
#define KPAD 12   // a key block's pointer list is padded to a multiple of this (score tiles)
#define MAXQB ROWS

static inline size_t clampz(int32_t v, size_t n) { return v < 0 ? 0 : ((size_t)v > n ? n : (size_t)v); }

// The two ranges of query t, clamped to [0, n) (an inverted range is empty).
static inline void query_ranges(const int32_t *ranges, size_t t, size_t n, size_t r[4]) {
    for (int i = 0; i < 4; i++) r[i] = clampz(ranges[4 * t + i], n);
    if (r[1] < r[0]) r[1] = r[0];
    if (r[3] < r[2]) r[3] = r[2];
}

void ck_ref_attend_ranges(const float *q, size_t T, size_t H, size_t d, const float *const *keys, size_t n,
                          const int32_t *ranges, const float *sinks, float scale, float *out) {
    const float **g = malloc((n + 2) * sizeof(float *));
    float *scratch = malloc((H * (n + 2) + 1) * sizeof(float));
    for (size_t t = 0; t < T; t++) {
        size_t r[4], m = 0;
        query_ranges(ranges, t, n, r);
        for (size_t k = r[0]; k < r[1]; k++) g[m++] = keys[k];
        for (size_t k = r[2]; k < r[3]; k++) g[m++] = keys[k];
        ck_ref_attend(q + t * H * d, H, d, g, m, sinks, scale, scratch, out + t * H * d);
    }
    free(g);
    free(scratch);
}

typedef struct {
    const float *q;
    size_t T, H, d;
    const float *const *keys;  // coded keys: their stored bytes (see `format`)
    size_t n;
    ck_kv_format format;  // of keys [0, coded); the rest are fp32
    size_t coded, rope;
    const int32_t *ranges;
    const float *sinks;
    float scale;
    float *out;
    size_t QB, Rmax, qblocks, segments;
    float *partial;  // segments > 1: per (query block, segment) [m: Rmax][l: Rmax][O: d·Rmax]
} ab_job;

static inline float *scratch(size_t n) { return ck_thread_scratch(CK_SCRATCH_ATTEND, n); }

// The union of the block's ranges as sorted disjoint intervals [iv[2i], iv[2i+1]); returns
// how many.
static size_t range_union(const int32_t *ranges, size_t t0, size_t nq, size_t n, size_t *iv) {
    size_t c = 0;
    for (size_t t = t0; t < t0 + nq; t++) {
        size_t r[4];
        query_ranges(ranges, t, n, r);
        for (int x = 0; x < 4; x += 2) {
            if (r[x] == r[x + 1]) continue;
            size_t i = c;  // insertion by start
            while (i > 0 && iv[2 * (i - 1)] > r[x]) {
                iv[2 * i] = iv[2 * (i - 1)];
                iv[2 * i + 1] = iv[2 * (i - 1) + 1];
                i--;
            }
            iv[2 * i] = r[x];
            iv[2 * i + 1] = r[x + 1];
            c++;
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < c; i++) {
        if (m > 0 && iv[2 * i] <= iv[2 * (m - 1) + 1]) {
            if (iv[2 * i + 1] > iv[2 * (m - 1) + 1]) iv[2 * (m - 1) + 1] = iv[2 * i + 1];
        } else {
            iv[2 * m] = iv[2 * i];
            iv[2 * m + 1] = iv[2 * i + 1];
            m++;
        }
    }
    return m;
}

#define TGT __attribute__((target("avx2,fma")))
#define AI __attribute__((always_inline))

// S[k][v] = Σ_i key_k[i] · Qt[i][v] for NK keys × NV row vectors (S and Qt offset to the
// first row vector, rows `Rp` apart).
TGT AI static inline void score_tile(const float *Qt, size_t Rp, size_t d, const float *const *kp, float *S,
                                     const int NK, const int NV) {
    __m256 a[12][2];  // [NK][NV] (fixed sizes: no variable-length array once inlined)
    for (int k = 0; k < NK; k++)
        for (int v = 0; v < NV; v++) a[k][v] = _mm256_setzero_ps();
    for (size_t i = 0; i < d; i++) {
        __m256 qv[2];
        for (int v = 0; v < NV; v++) qv[v] = _mm256_load_ps(Qt + i * Rp + 8 * v);
        for (int k = 0; k < NK; k++) {
            __m256 b = _mm256_broadcast_ss(kp[k] + i);
            for (int v = 0; v < NV; v++) a[k][v] = _mm256_fmadd_ps(b, qv[v], a[k][v]);
        }
    }
    for (int k = 0; k < NK; k++)
        for (int v = 0; v < NV; v++) _mm256_store_ps(S + k * Rp + 8 * v, a[k][v]);
}

// O[dim + j][v] = O[dim + j][v] · α[v] + Σ_k key_k[dim + j] · P[k][v] for ND dims × NV row
// vectors (O, P and α offset to the first row vector).
TGT AI static inline void pv_tile(const float *const *kp, size_t kb, const float *P, size_t Rp, const float *alpha,
                                  float *O, size_t dim, const int ND, const int NV) {
    __m256 a[12][2], al[2];  // [ND][NV], [NV]
    for (int v = 0; v < NV; v++) al[v] = _mm256_load_ps(alpha + 8 * v);
    for (int j = 0; j < ND; j++)
        for (int v = 0; v < NV; v++) a[j][v] = _mm256_mul_ps(_mm256_load_ps(O + (dim + j) * Rp + 8 * v), al[v]);
    for (size_t k = 0; k < kb; k++) {
        __m256 pv[2];
        for (int v = 0; v < NV; v++) pv[v] = _mm256_load_ps(P + k * Rp + 8 * v);
        const float *key = kp[k] + dim;
        for (int j = 0; j < ND; j++) {
            __m256 b = _mm256_broadcast_ss(key + j);
            for (int v = 0; v < NV; v++) a[j][v] = _mm256_fmadd_ps(b, pv[v], a[j][v]);
        }
    }
    for (int j = 0; j < ND; j++)
        for (int v = 0; v < NV; v++) _mm256_store_ps(O + (dim + j) * Rp + 8 * v, a[j][v]);
}

// Fewer than 12 / NV dims from `dim` on.
TGT AI static inline void pv_tail(const float *const *kp, size_t kb, const float *P, size_t Rp, const float *alpha,
                                  float *O, size_t dim, size_t nd, const int NV) {
    switch (nd) {
    case 0: break;
    case 1: pv_tile(kp, kb, P, Rp, alpha, O, dim, 1, NV); break;
    case 2: pv_tile(kp, kb, P, Rp, alpha, O, dim, 2, NV); break;
    case 3: pv_tile(kp, kb, P, Rp, alpha, O, dim, 3, NV); break;
    case 4: pv_tile(kp, kb, P, Rp, alpha, O, dim, 4, NV); break;
    case 5: pv_tile(kp, kb, P, Rp, alpha, O, dim, 5, NV); break;
    case 6: pv_tile(kp, kb, P, Rp, alpha, O, dim, 6, NV); break;
    case 7: pv_tile(kp, kb, P, Rp, alpha, O, dim, 7, NV); break;
    case 8: pv_tile(kp, kb, P, Rp, alpha, O, dim, 8, NV); break;
    case 9: pv_tile(kp, kb, P, Rp, alpha, O, dim, 9, NV); break;
    case 10: pv_tile(kp, kb, P, Rp, alpha, O, dim, 10, NV); break;
    default: pv_tile(kp, kb, P, Rp, alpha, O, dim, 11, NV); break;
    }
}

// All dims of O for NV row vectors: tiles of 12 / NV dims, then the tail.
TGT AI static inline void pv_rows(const float *const *kp, size_t kb, const float *P, size_t Rp, const float *alpha,
                                  float *O, size_t d, const int NV) {
    const int ND = 12 / NV;
    size_t dim = 0;
    // Whole tiles, then the rest (below 2·ND) in at most two tiles of nearly equal width (no
    // tile of one or two dims when another tile can lend: fewer accumulator chains run slower).
    size_t full = d / ND > 0 && d % ND != 0 && d % ND < (size_t)ND / 2 ? d / ND - 1 : d / ND;
    for (; dim < full * ND; dim += ND) pv_tile(kp, kb, P, Rp, alpha, O, dim, ND, NV);
    if (d - dim > (size_t)ND) {
        size_t half = (d - dim) / 2;
        pv_tail(kp, kb, P, Rp, alpha, O, dim, half, NV);
        dim += half;
    }
    pv_tail(kp, kb, P, Rp, alpha, O, dim, d - dim, NV);
}


TGT static void pv_rows2(const float *const *kp, size_t kb, const float *P, size_t Rp, const float *alpha, float *O,
                         size_t d) {
    pv_rows(kp, kb, P, Rp, alpha, O, d, 2);
}
TGT static void pv_rows1(const float *const *kp, size_t kb, const float *P, size_t Rp, const float *alpha, float *O,
                         size_t d) {
    pv_rows(kp, kb, P, Rp, alpha, O, d, 1);
}

// x[0..8) ← its transpose (x[a] lane b ↔ x[b] lane a).
TGT static inline void transpose8(__m256 x[8]) {
    __m256 t[8], u[8];
    for (int a = 0; a < 8; a += 2) {
        t[a] = _mm256_unpacklo_ps(x[a], x[a + 1]);
        t[a + 1] = _mm256_unpackhi_ps(x[a], x[a + 1]);
    }
    for (int a = 0; a < 8; a += 4) {
        u[a] = _mm256_shuffle_ps(t[a], t[a + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[a + 1] = _mm256_shuffle_ps(t[a], t[a + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[a + 2] = _mm256_shuffle_ps(t[a + 1], t[a + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[a + 3] = _mm256_shuffle_ps(t[a + 1], t[a + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int a = 0; a < 4; a++) {
        x[a] = _mm256_permute2f128_ps(u[a], u[a + 4], 0x20);
        x[a + 4] = _mm256_permute2f128_ps(u[a], u[a + 4], 0x31);
    }
}

// Qt [d][Rp] ← scale · the transpose of the block's query rows src [R][d] (rows R..Rp zero).
TGT static void pack_queries(const float *src, size_t R, size_t d, size_t Rp, float scale, float *Qt) {
    __m256 sc = _mm256_set1_ps(scale);
    size_t r = 0;
    for (; r + 8 <= R; r += 8) {
        size_t i = 0;
        for (; i + 8 <= d; i += 8) {
            __m256 x[8];
            for (int a = 0; a < 8; a++) x[a] = _mm256_loadu_ps(src + (r + a) * d + i);
            transpose8(x);
            for (int a = 0; a < 8; a++) _mm256_store_ps(Qt + (i + a) * Rp + r, _mm256_mul_ps(x[a], sc));
        }
        for (; i < d; i++)
            for (size_t a = 0; a < 8; a++) Qt[i * Rp + r + a] = src[(r + a) * d + i] * scale;
    }
    for (; r < Rp; r++)
        for (size_t i = 0; i < d; i++) Qt[i * Rp + r] = r < R ? src[r * d + i] * scale : 0;
}

// dst [R][d] ← the transpose of O [d][Rp], row r times inv[r].
TGT static void unpack_rows(const float *O, const float *inv, size_t R, size_t d, size_t Rp, float *dst) {
    size_t r = 0;
    for (; r + 8 <= R; r += 8) {
        size_t i = 0;
        for (; i + 8 <= d; i += 8) {
            __m256 x[8];
            for (int a = 0; a < 8; a++) x[a] = _mm256_load_ps(O + (i + a) * Rp + r);
            transpose8(x);
            for (int a = 0; a < 8; a++)
                _mm256_storeu_ps(dst + (r + a) * d + i, _mm256_mul_ps(x[a], _mm256_broadcast_ss(inv + r + a)));
        }
        for (; i < d; i++)
            for (size_t a = 0; a < 8; a++) dst[(r + a) * d + i] = O[i * Rp + r + a] * inv[r + a];
    }
    for (; r < R; r++)
        for (size_t i = 0; i < d; i++) dst[r * d + i] = O[i * Rp + r] * inv[r];
}

// One key block (kp[0..kb), padded to a multiple of KPAD; idx: the keys' indices) against the
// query block's rows: scores, mask, online softmax, O update.
TGT static void key_block(const ab_job *j, size_t t0, size_t nq, size_t Rp, const float *Qt, const float *const *kp,
                          const size_t *idx, size_t kb, float *S, float *m, float *l, float *alpha, float *O) {
    size_t H = j->H, d = j->d, nv = Rp / 8;
    for (size_t k = 0; k < kb; k += 6) {
        size_t v = 0;
        for (; v + 2 <= nv; v += 2) score_tile(Qt + 8 * v, Rp, d, kp + k, S + k * Rp + 8 * v, 6, 2);
        if (v < nv && k % 12 == 0) score_tile(Qt + 8 * v, Rp, d, kp + k, S + k * Rp + 8 * v, 12, 1);
    }
    // Keys a query does not see: −inf for all its heads.
    for (size_t x = 0; x < nq; x++) {
        size_t r[4];
        query_ranges(j->ranges, t0 + x, j->n, r);
        for (size_t k = 0; k < kb; k++) {
            size_t i = idx[k];
            if ((i >= r[0] && i < r[1]) || (i >= r[2] && i < r[3])) continue;
            for (size_t h = 0; h < H; h++) S[k * Rp + x * H + h] = -INFINITY;
        }
    }
    for (size_t v = 0; v < nv; v++) {
        __m256 mx = _mm256_load_ps(m + 8 * v);
        for (size_t k = 0; k < kb; k++) mx = _mm256_max_ps(mx, _mm256_load_ps(S + k * Rp + 8 * v));
        __m256 a = ck_exp256(_mm256_sub_ps(_mm256_load_ps(m + 8 * v), mx));
        _mm256_store_ps(m + 8 * v, mx);
        _mm256_store_ps(alpha + 8 * v, a);
        __m256 sum = _mm256_setzero_ps();
        for (size_t k = 0; k < kb; k++) {
            __m256 p = ck_exp256(_mm256_sub_ps(_mm256_load_ps(S + k * Rp + 8 * v), mx));
            _mm256_store_ps(S + k * Rp + 8 * v, p);
            sum = _mm256_add_ps(sum, p);
        }
        _mm256_store_ps(l + 8 * v, _mm256_fmadd_ps(_mm256_load_ps(l + 8 * v), a, sum));
    }
    size_t v = 0;
    for (; v + 2 <= nv; v += 2) pv_rows2(kp, kb, S + 8 * v, Rp, alpha + 8 * v, O + 8 * v, d);
    if (v < nv) pv_rows1(kp, kb, S + 8 * v, Rp, alpha + 8 * v, O + 8 * v, d);
}

// One task: query block `task / segments` over segment `task % segments` of its keys.
TGT static void ab_task(void *ctx, int task) {
    const ab_job *j = (const ab_job *)ctx;
    size_t qb = (size_t)task / j->segments, seg = (size_t)task % j->segments;
    size_t H = j->H, d = j->d, t0 = qb * j->QB, nq = j->T - t0 < j->QB ? j->T - t0 : j->QB;
    size_t R = nq * H, Rp = (R + 7) / 8 * 8;
    size_t iv[4 * MAXQB];
    size_t ni = range_union(j->ranges, t0, nq, j->n, iv), U = 0;
    for (size_t i = 0; i < ni; i++) U += iv[2 * i + 1] - iv[2 * i];
    // This segment's share of the union (whole key blocks), cut into blocks of nearly equal size.
    size_t blocks = (U + KB - 1) / KB, per = (blocks + j->segments - 1) / j->segments;
    size_t u0 = seg * per * KB < U ? seg * per * KB : U, u1 = (seg + 1) * per * KB < U ? (seg + 1) * per * KB : U;
    // Blocks of equal size, a multiple of KPAD (the score tiles' key count), the last shorter.
    size_t nb = (u1 - u0 + KB - 1) / KB, bs = nb ? ((u1 - u0 + nb - 1) / nb + KPAD - 1) / KPAD * KPAD : KB;

    float *base = scratch(d * Rp + (KB + KPAD) * Rp + d * Rp + 3 * Rp + 16);
    float *Qt = base, *S = Qt + d * Rp, *O = S + (KB + KPAD) * Rp, *m = O + d * Rp, *l = m + Rp, *alpha = l + Rp;
    if (j->segments > 1) {
        float *p = j->partial + (qb * j->segments + seg) * (2 + d) * j->Rmax;
        m = p;
        l = p + j->Rmax;
        O = p + 2 * j->Rmax;
    }
    pack_queries(j->q + t0 * H * d, R, d, Rp, j->scale, Qt);
    for (size_t r = 0; r < Rp; r++) {
        float s = r < R ? j->sinks[r % H] : 0;
        m[r] = s > -FLT_MAX ? s : -FLT_MAX;
        l[r] = seg == 0 ? expf(s - m[r]) : 0;
    }
    memset(O, 0, d * Rp * sizeof(float));

    const float *kp[KB + KPAD];
    size_t idx[KB + KPAD];
    float *kbuf = j->coded ? ck_thread_scratch(CK_SCRATCH_KEYS, (KB + KPAD) * d) : NULL;
    size_t ci = 0, cu = 0;  // interval of virtual position cu
    for (size_t b = 0; b < nb; b++) {
        size_t v0 = u0 + b * bs, v1 = v0 + bs < u1 ? v0 + bs : u1, kb = v1 - v0;
        if (v0 >= u1) break;
        while (cu + (iv[2 * ci + 1] - iv[2 * ci]) <= v0) cu += iv[2 * ci + 1] - iv[2 * ci], ci++;
        size_t c = ci, cstart = cu;
        for (size_t k = 0; k < kb; k++) {
            size_t v = v0 + k;
            while (v >= cstart + (iv[2 * c + 1] - iv[2 * c])) cstart += iv[2 * c + 1] - iv[2 * c], c++;
            idx[k] = iv[2 * c] + (v - cstart);
            kp[k] = j->keys[idx[k]];
            if (idx[k] < j->coded) {
                ck_kv_load(j->format, kp[k], d, j->rope, kbuf + k * d);
                kp[k] = kbuf + k * d;
            }
        }
        for (size_t k = kb; k < KB + KPAD; k++) kp[k] = kp[0];
        key_block(j, t0, nq, Rp, Qt, kp, idx, kb, S, m, l, alpha, O);
    }
    if (j->segments > 1) return;
    // out = O / l (0 for a query that sees no key: its O is 0, and l may be 0 with a −inf sink).
    for (size_t r = 0; r < R; r++) {
        size_t rr[4];
        query_ranges(j->ranges, t0 + r / H, j->n, rr);
        alpha[r] = rr[0] == rr[1] && rr[2] == rr[3] ? 0.0f : 1.0f / l[r];
    }
    unpack_rows(O, alpha, R, d, Rp, j->out + t0 * H * d);
}

void ck_attend_ranges(const float *q, size_t T, size_t H, size_t d, const float *const *keys, size_t n,
                      const int32_t *ranges, const float *sinks, float scale, float *out) {
    ck_attend_ranges_kv(q, T, H, d, (const void *const *)keys, n, CK_KV_F32, 0, 0, ranges, sinks, scale, out);
}

// The scalar path: the coded keys decoded into one buffer, then the twin.
static void attend_ranges_decoded(const float *q, size_t T, size_t H, size_t d, const void *const *keys, size_t n,
                                  ck_kv_format f, size_t coded, size_t rope, const int32_t *ranges,
                                  const float *sinks, float scale, float *out) {
    float *buf = malloc((coded * d + 1) * sizeof(float));
    const float **kp = malloc((n + 1) * sizeof(float *));
    for (size_t k = 0; k < n; k++) {
        if (k < coded) ck_kv_load(f, keys[k], d, rope, buf + k * d);
        kp[k] = k < coded ? buf + k * d : (const float *)keys[k];
    }
    ck_ref_attend_ranges(q, T, H, d, kp, n, ranges, sinks, scale, out);
    free(kp);
    free(buf);
}

static void attend_ranges(const float *q, size_t T, size_t H, size_t d, const void *const *keys, size_t n,
                          ck_kv_format f, size_t coded, size_t rope, const int32_t *ranges, const float *sinks,
                          float scale, float *out);

typedef struct {
    const float *q;
    size_t H, d;
    const void *const *keys;
    size_t n;
    ck_kv_format f;
    size_t coded, rope;
    const int32_t *ranges;
    const float *sinks;
    float scale;
    float *out;
    size_t per;  // heads per task
} heads_job;

static void heads_task(void *ctx, int g) {
    const heads_job *j = (const heads_job *)ctx;
    size_t h0 = (size_t)g * j->per, hc = j->H - h0 < j->per ? j->H - h0 : j->per;
    attend_ranges(j->q + h0 * j->d, 1, hc, j->d, j->keys, j->n, j->f, j->coded, j->rope, j->ranges, j->sinks + h0,
                  j->scale, j->out + h0 * j->d);
}

// One query (decode) over keys too few to cut into segments ran as one task: its heads are
// split over the threads instead, in whole row vectors (each row's operations do not depend on
// the rows beside it, so the same bits).
void ck_attend_ranges_kv(const float *q, size_t T, size_t H, size_t d, const void *const *keys, size_t n,
                         ck_kv_format f, size_t coded, size_t rope, const int32_t *ranges, const float *sinks,
                         float scale, float *out) {
    size_t threads = (size_t)ck_pool_threads();
    if (T == 1 && threads > 1 && H >= 16 && n < 8 * KB && H * n * d >= ((size_t)1 << 16) &&
        (ck_use_avx512() || ck_use_avx2())) {
        heads_job j = {q, H, d, keys, n, f, coded, rope, ranges, sinks, scale, out, ((H + threads - 1) / threads + 7) / 8 * 8};
        ck_pool_run((int)((H + j.per - 1) / j.per), heads_task, &j);
        return;
    }
    attend_ranges(q, T, H, d, keys, n, f, coded, rope, ranges, sinks, scale, out);
}

static void attend_ranges(const float *q, size_t T, size_t H, size_t d, const void *const *keys, size_t n,
                          ck_kv_format f, size_t coded, size_t rope, const int32_t *ranges, const float *sinks,
                          float scale, float *out) {
    if (f == CK_KV_F32) coded = 0;
    if (coded > n) coded = n;
    if (!(ck_use_avx512() || ck_use_avx2()) || T == 0 || H == 0 || d == 0) {
        attend_ranges_decoded(q, T, H, d, keys, n, f, coded, rope, ranges, sinks, scale, out);
        return;
    }
    ab_job j = {.q = q, .T = T, .H = H, .d = d, .keys = (const float *const *)keys, .n = n, .format = f,
                .coded = coded, .rope = rope, .ranges = ranges, .sinks = sinks, .scale = scale, .out = out};
    j.QB = H >= ROWS ? 1 : ROWS / H;
    if (j.QB > T) j.QB = T;
    j.Rmax = (j.QB * H + 7) / 8 * 8;
    j.qblocks = (T + j.QB - 1) / j.QB;
    // Enough tasks for every thread; the keys split only when the query blocks alone are too
    // few, into segments of at least 4 key blocks.
    size_t threads = (size_t)ck_pool_threads(), want = 4 * threads;
    j.segments = 1;
    if (threads > 1 && j.qblocks < want) {
        j.segments = (want + j.qblocks - 1) / j.qblocks;
        size_t most = n / (4 * KB) > 1 ? n / (4 * KB) : 1;
        if (j.segments > most) j.segments = most;
    }
    if (j.segments > 1)
        j.partial = aligned_alloc(64, (j.qblocks * j.segments * (2 + d) * j.Rmax * sizeof(float) + 63) / 64 * 64);
    ck_pool_run((int)(j.qblocks * j.segments), ab_task, &j);
    if (j.segments == 1) return;
    // Merge each row's segments: M = max m_s, out = Σ e^(m_s − M)·O_s / Σ e^(m_s − M)·l_s.
    size_t S = j.segments, Rm = j.Rmax;
    float *c = malloc(S * sizeof(float));
    for (size_t qb = 0; qb < j.qblocks; qb++) {
        size_t t0 = qb * j.QB, nq = T - t0 < j.QB ? T - t0 : j.QB;
        const float *p = j.partial + qb * S * (2 + d) * Rm;
        size_t Rp = (nq * H + 7) / 8 * 8;  // O's row stride in this block (m and l: Rm apart)
        for (size_t r = 0; r < nq * H; r++) {
            size_t rr[4];
            query_ranges(ranges, t0 + r / H, n, rr);
            float *o = out + (t0 * H + r) * d;
            if (rr[0] == rr[1] && rr[2] == rr[3]) {
                memset(o, 0, d * sizeof(float));
                continue;
            }
            float M = -FLT_MAX, L = 0;
            for (size_t s = 0; s < S; s++) M = p[s * (2 + d) * Rm + r] > M ? p[s * (2 + d) * Rm + r] : M;
            for (size_t s = 0; s < S; s++) {
                c[s] = expf(p[s * (2 + d) * Rm + r] - M);
                L += c[s] * p[s * (2 + d) * Rm + Rm + r];
            }
            float inv = 1.0f / L;
            for (size_t i = 0; i < d; i++) {
                float acc = 0;
                for (size_t s = 0; s < S; s++) acc += c[s] * p[s * (2 + d) * Rm + 2 * Rm + i * Rp + r];
                o[i] = acc * inv;
            }
        }
    }
    free(c);
    free(j.partial);
}
