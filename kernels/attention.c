// attention.c: one query's attention over a gathered set of keys (V = K, as in V4's shared
// K=V head), for all heads at once: scores, softmax with a per-head sink in the
// denominator, and the weighted sum. Each key is loaded once for every head.
//
//   s[h][k] = scale · q[h] · key_k,   M_h = max(sink_h, max_k s[h][k])
//   out[h]  = Σ_k exp(s[h][k] − M_h) · key_k / (Σ_k exp(s[h][k] − M_h) + exp(sink_h − M_h))
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include "internal.h"

static void softmax_with_sink(float *s, size_t H, size_t n, const float *sinks) {
    for (size_t h = 0; h < H; h++) {
        float *row = s + h * n;
        float mx = sinks[h];
        for (size_t k = 0; k < n; k++) mx = row[k] > mx ? row[k] : mx;
        float denom = expf(sinks[h] - mx);
        for (size_t k = 0; k < n; k++) {
            row[k] = expf(row[k] - mx);
            denom += row[k];
        }
        float inv = 1.0f / denom;
        for (size_t k = 0; k < n; k++) row[k] *= inv;
    }
}

// The fast paths' softmax: the same steps with the vector exp (ck_exp_f32, within 2 ulp).
static void softmax_with_sink_fast(float *s, size_t H, size_t n, const float *sinks) {
    for (size_t h = 0; h < H; h++) {
        float *row = s + h * n;
        float mx = sinks[h];
        for (size_t k = 0; k < n; k++) mx = row[k] > mx ? row[k] : mx;
        for (size_t k = 0; k < n; k++) row[k] -= mx;
        ck_exp_f32(row, n, row);
        float denom = expf(sinks[h] - mx);
        for (size_t k = 0; k < n; k++) denom += row[k];
        float inv = 1.0f / denom;
        for (size_t k = 0; k < n; k++) row[k] *= inv;
    }
}

void ck_ref_attend(const float *q, size_t H, size_t d, const float *const *keys, size_t n, const float *sinks,
                   float scale, float *scratch, float *out) {
    for (size_t h = 0; h < H; h++)
        for (size_t k = 0; k < n; k++) {
            float acc = 0;
            for (size_t i = 0; i < d; i++) acc += q[h * d + i] * keys[k][i];
            scratch[h * n + k] = acc * scale;
        }
    softmax_with_sink(scratch, H, n, sinks);
    for (size_t h = 0; h < H; h++) {
        for (size_t i = 0; i < d; i++) out[h * d + i] = 0;
        for (size_t k = 0; k < n; k++)
            for (size_t i = 0; i < d; i++) out[h * d + i] += scratch[h * n + k] * keys[k][i];
    }
}

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl")))

// Scores of 4 keys × 4 heads per register block; output of 4 heads × 32 dims per block,
// accumulated in registers over all keys.
// FULL (a constant at both calls below): d is a multiple of 32, so every load is whole and
// plain; masked loads in every step cost the product blocks ~9 % on Zen 4 (matmul_bf16.c).
#define LOAD16(M, P) (FULL ? _mm512_loadu_ps(P) : _mm512_maskz_loadu_ps((M), (P)))
TGT __attribute__((always_inline)) static inline void attend_impl(const float *q, size_t H, size_t d, const float *const *keys,
                                                                  size_t n, const float *sinks, float scale, float *s,
                                                                  float *out, const int FULL) {
    size_t k = 0;
    for (; k < n; k += 4) {
        size_t kb = n - k < 4 ? n - k : 4;
        const float *kp[4];
        for (size_t j = 0; j < 4; j++) kp[j] = keys[k + (j < kb ? j : 0)];
        for (size_t h = 0; h < H; h += 4) {
            size_t hb = H - h < 4 ? H - h : 4;
            const float *qp[4];
            for (size_t j = 0; j < 4; j++) qp[j] = q + (h + (j < hb ? j : 0)) * d;
            __m512 a[4][4];
            for (int x = 0; x < 4; x++)
                for (int y = 0; y < 4; y++) a[x][y] = _mm512_setzero_ps();
            for (size_t i = 0; i < d; i += 16) {
                __mmask16 m = (i + 16 <= d) ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - i)) - 1);
                __m512 kv[4], qv[4];
                for (int j = 0; j < 4; j++) kv[j] = LOAD16(m, kp[j] + i);
                for (int j = 0; j < 4; j++) qv[j] = LOAD16(m, qp[j] + i);
                for (int x = 0; x < 4; x++)
                    for (int y = 0; y < 4; y++) a[x][y] = _mm512_fmadd_ps(qv[x], kv[y], a[x][y]);
            }
            float t[16];
            ck_sums(&a[0][0], 16, t);
            for (size_t x = 0; x < hb; x++)
                for (size_t y = 0; y < kb; y++) s[(h + x) * n + k + y] = t[x * 4 + y] * scale;
        }
    }
    softmax_with_sink_fast(s, H, n, sinks);
    for (size_t h = 0; h < H; h += 4) {
        size_t hb = H - h < 4 ? H - h : 4;
        const float *pr[4];
        for (size_t j = 0; j < 4; j++) pr[j] = s + (h + (j < hb ? j : 0)) * n;
        for (size_t i = 0; i < d; i += 32) {
            __mmask16 m0 = (i + 16 <= d) ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - i)) - 1);
            __mmask16 m1 = (i + 32 <= d) ? (__mmask16)0xFFFF : (i + 16 < d ? (__mmask16)((1u << (d - i - 16)) - 1) : 0);
            __m512 c[4][2];
            for (int x = 0; x < 4; x++) c[x][0] = c[x][1] = _mm512_setzero_ps();
            for (size_t kk = 0; kk < n; kk++) {
                __m512 k0 = LOAD16(m0, keys[kk] + i);
                __m512 k1 = LOAD16(m1, keys[kk] + i + 16);
                for (int x = 0; x < 4; x++) {
                    __m512 pv = _mm512_set1_ps(pr[x][kk]);
                    c[x][0] = _mm512_fmadd_ps(pv, k0, c[x][0]);
                    c[x][1] = _mm512_fmadd_ps(pv, k1, c[x][1]);
                }
            }
            for (size_t x = 0; x < hb; x++) {
                _mm512_mask_storeu_ps(out + (h + x) * d + i, m0, c[x][0]);
                _mm512_mask_storeu_ps(out + (h + x) * d + i + 16, m1, c[x][1]);
            }
        }
    }
}

#undef LOAD16

TGT static void attend_avx512(const float *q, size_t H, size_t d, const float *const *keys, size_t n, const float *sinks,
                              float scale, float *s, float *out) {
    if (d % 32 == 0) attend_impl(q, H, d, keys, n, sinks, scale, s, out, 1);
    else attend_impl(q, H, d, keys, n, sinks, scale, s, out, 0);
}

#define TGT2 __attribute__((target("avx2,fma")))

TGT2 static inline float hsum8(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

// The AVX2 twin of attend_avx512: scores of 2 keys × 4 heads per register block (d in
// 8-wide steps, a scalar tail), output of 4 heads × 16 dims accumulated over all keys.
TGT2 static void attend_avx2(const float *q, size_t H, size_t d, const float *const *keys, size_t n, const float *sinks,
                             float scale, float *s, float *out) {
    size_t dv = d / 8 * 8;
    for (size_t k = 0; k < n; k += 2) {
        size_t kb = n - k < 2 ? n - k : 2;
        const float *kp[2] = {keys[k], keys[k + (kb > 1 ? 1 : 0)]};
        for (size_t h = 0; h < H; h += 4) {
            size_t hb = H - h < 4 ? H - h : 4;
            const float *qp[4];
            for (size_t j = 0; j < 4; j++) qp[j] = q + (h + (j < hb ? j : 0)) * d;
            __m256 a[4][2];
            for (int x = 0; x < 4; x++) a[x][0] = a[x][1] = _mm256_setzero_ps();
            for (size_t i = 0; i < dv; i += 8) {
                __m256 k0 = _mm256_loadu_ps(kp[0] + i), k1 = _mm256_loadu_ps(kp[1] + i);
                for (int x = 0; x < 4; x++) {
                    __m256 qv = _mm256_loadu_ps(qp[x] + i);
                    a[x][0] = _mm256_fmadd_ps(qv, k0, a[x][0]);
                    a[x][1] = _mm256_fmadd_ps(qv, k1, a[x][1]);
                }
            }
            for (size_t x = 0; x < hb; x++)
                for (size_t y = 0; y < kb; y++) {
                    float acc = hsum8(a[x][y]);
                    for (size_t i = dv; i < d; i++) acc += qp[x][i] * kp[y][i];
                    s[(h + x) * n + k + y] = acc * scale;
                }
        }
    }
    softmax_with_sink_fast(s, H, n, sinks);
    for (size_t h = 0; h < H; h += 4) {
        size_t hb = H - h < 4 ? H - h : 4;
        const float *pr[4];
        for (size_t j = 0; j < 4; j++) pr[j] = s + (h + (j < hb ? j : 0)) * n;
        for (size_t i = 0; i < dv; i += 16) {
            int two = i + 16 <= dv;
            __m256 c[4][2];
            for (int x = 0; x < 4; x++) c[x][0] = c[x][1] = _mm256_setzero_ps();
            for (size_t kk = 0; kk < n; kk++) {
                __m256 k0 = _mm256_loadu_ps(keys[kk] + i);
                __m256 k1 = two ? _mm256_loadu_ps(keys[kk] + i + 8) : _mm256_setzero_ps();
                for (int x = 0; x < 4; x++) {
                    __m256 pv = _mm256_broadcast_ss(pr[x] + kk);
                    c[x][0] = _mm256_fmadd_ps(pv, k0, c[x][0]);
                    c[x][1] = _mm256_fmadd_ps(pv, k1, c[x][1]);
                }
            }
            for (size_t x = 0; x < hb; x++) {
                _mm256_storeu_ps(out + (h + x) * d + i, c[x][0]);
                if (two) _mm256_storeu_ps(out + (h + x) * d + i + 8, c[x][1]);
            }
        }
        for (size_t x = 0; x < hb; x++)
            for (size_t i = dv; i < d; i++) {
                float acc = 0;
                for (size_t kk = 0; kk < n; kk++) acc += pr[x][kk] * keys[kk][i];
                out[(h + x) * d + i] = acc;
            }
    }
}

static void attend_heads(const float *q, size_t H, size_t d, const float *const *keys, size_t n, const float *sinks,
                         float scale, float *scratch, float *out) {
    if (ck_use_avx512()) attend_avx512(q, H, d, keys, n, sinks, scale, scratch, out);
    else if (ck_use_avx2()) attend_avx2(q, H, d, keys, n, sinks, scale, scratch, out);
    else ck_ref_attend(q, H, d, keys, n, sinks, scale, scratch, out);
}

typedef struct {
    const float *q;
    size_t H, d;
    const float *const *keys;
    size_t n;
    const float *sinks;
    float scale;
    float *scratch, *out;
    size_t per;  // heads per task
} attend_job;

static void attend_group(void *ctx, int g) {
    const attend_job *j = (const attend_job *)ctx;
    size_t h0 = (size_t)g * j->per, hc = j->H - h0 < j->per ? j->H - h0 : j->per;
    attend_heads(j->q + h0 * j->d, hc, j->d, j->keys, j->n, j->sinks + h0, j->scale, j->scratch + h0 * j->n,
                 j->out + h0 * j->d);
}

// One query's heads are independent, and each head runs the same operations whatever block of
// heads it is in: a query with enough work is split into groups of whole 4-head blocks over the
// pool (inside a task, as in prefill, the groups run one after another). Decode attends one
// query per sequence, which ran on one thread while the others waited.
void ck_attend(const float *q, size_t H, size_t d, const float *const *keys, size_t n, const float *sinks, float scale,
               float *scratch, float *out) {
    size_t threads = (size_t)ck_pool_threads();
    if (threads > 1 && H >= 8 && H * n * d >= ((size_t)1 << 16)) {
        attend_job j = {q, H, d, keys, n, sinks, scale, scratch, out, ((H + threads - 1) / threads + 3) / 4 * 4};
        ck_pool_run((int)((H + j.per - 1) / j.per), attend_group, &j);
        return;
    }
    attend_heads(q, H, d, keys, n, sinks, scale, scratch, out);
}
