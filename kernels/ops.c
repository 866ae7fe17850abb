// ops.c: the model's small operations around the matrix products, each next to its scalar
// reference twin (ck_ref_*): SwiGLU with V4's clamps, RMSNorm, interleaved RoPE over many
// heads, top-k, the Lightning-Indexer score, the compressor's softmax pooling and the
// Sinkhorn projection. The twins are the definitions; tests state each fast path's tolerance.
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

// MARK: - vector exp (AVX-512)
//
// e^x = 2^n · e^r with n = round(x / ln 2), r = x − n·ln 2 (Cody–Waite split), e^r by a
// degree-6 polynomial (Cephes' expf coefficients), 2^n applied by scalef. Within 2 ulp of
// expf over the whole float range; overflow gives +inf, underflow 0, NaN stays NaN.
TGT static inline __m512 exp512(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f);
    // (bounds first: MAXPS/MINPS return the second operand when either is NaN, so NaN stays)
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2hi, x);
    r = _mm512_fnmadd_ps(n, ln2lo, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

TGT static void exp_avx512(const float *x, size_t n, float *out) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = i + 16 <= n ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, exp512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

// The same on AVX2 (ck_exp256, internal.h): 2^n applied as two exponent-field multiplies (n
// split in halves, each a normal power of two), so underflow into denormals rounds once, as
// scalef does.
__attribute__((target("avx2,fma"))) static void exp_avx2(const float *x, size_t n, float *out) {
    for (size_t i = 0; i < n; i += 8) {
        float buf[8] = {0};
        size_t m = n - i < 8 ? n - i : 8;
        memcpy(buf, x + i, m * sizeof(float));
        __m256 p = ck_exp256(_mm256_loadu_ps(buf));
        _mm256_storeu_ps(buf, p);
        memcpy(out + i, buf, m * sizeof(float));
    }
}

void ck_exp_f32(const float *x, size_t n, float *out) {
    if (ck_use_avx512()) {
        exp_avx512(x, n, out);
        return;
    }
    if (ck_use_avx2()) {
        exp_avx2(x, n, out);
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = expf(x[i]);
}

// MARK: - log-sum-exp

double ck_ref_logsumexp(const float *x, size_t n) {
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (n == 0 || isinf(mx)) return mx;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += exp((double)(x[i] - mx));
    return log(sum) + mx;
}

// The max, then Σ e^(x − max) with ck_exp256 (within 2 ulp of expf), the lanes summed in double.
__attribute__((target("avx2,fma"))) static double logsumexp_avx2(const float *x, size_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    float mx = -INFINITY;
    for (int l = 0; l < 8; l++) mx = lanes[l] > mx ? lanes[l] : mx;
    for (size_t j = i; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    if (n == 0 || isinf(mx)) return mx;
    const __m256 shift = _mm256_set1_ps(mx);
    __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = ck_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), shift));
        a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        b = _mm256_add_pd(b, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double d[4];
    _mm256_storeu_pd(d, _mm256_add_pd(a, b));
    double sum = d[0] + d[1] + d[2] + d[3];
    for (; i < n; i++) sum += exp((double)(x[i] - mx));
    return log(sum) + mx;
}

double ck_logsumexp(const float *x, size_t n) {
    return ck_use_avx2() || ck_use_avx512() ? logsumexp_avx2(x, n) : ck_ref_logsumexp(x, n);
}

// MARK: - SwiGLU

void ck_ref_swiglu(const float *g, const float *u, size_t n, float limit, float *out) {
    int clamp = limit > 0;
    for (size_t i = 0; i < n; i++) {
        float gv = g[i], uv = u[i];
        if (clamp) {
            gv = fminf(gv, limit);
            uv = fminf(fmaxf(uv, -limit), limit);
        }
        out[i] = gv / (1.0f + expf(-gv)) * uv;
    }
}

TGT static void swiglu_avx512(const float *g, const float *u, size_t n, float limit, float *out) {
    int clamp = limit > 0;
    const __m512 lim = _mm512_set1_ps(limit), nlim = _mm512_set1_ps(-limit), one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = i + 16 <= n ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
        if (clamp) {
            gv = _mm512_min_ps(gv, lim);
            uv = _mm512_min_ps(_mm512_max_ps(uv, nlim), lim);
        }
        __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, uv));
    }
}

// The same on AVX2 (ck_exp256 has exp512's arithmetic); the tail through a buffer.
__attribute__((target("avx2,fma"))) static void swiglu_avx2(const float *g, const float *u, size_t n, float limit,
                                                            float *out) {
    int clamp = limit > 0;
    const __m256 lim = _mm256_set1_ps(limit), nlim = _mm256_set1_ps(-limit), one = _mm256_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 8) {
        size_t m = n - i < 8 ? n - i : 8;
        float gb[8] = {0}, ub[8] = {0}, ob[8];
        const float *gp = g + i, *up = u + i;
        if (m < 8) {
            memcpy(gb, gp, m * sizeof(float));
            memcpy(ub, up, m * sizeof(float));
            gp = gb;
            up = ub;
        }
        __m256 gv = _mm256_loadu_ps(gp), uv = _mm256_loadu_ps(up);
        if (clamp) {
            gv = _mm256_min_ps(gv, lim);
            uv = _mm256_min_ps(_mm256_max_ps(uv, nlim), lim);
        }
        __m256 sv = _mm256_div_ps(gv, _mm256_add_ps(one, ck_exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
        if (m == 8) {
            _mm256_storeu_ps(out + i, _mm256_mul_ps(sv, uv));
        } else {
            _mm256_storeu_ps(ob, _mm256_mul_ps(sv, uv));
            memcpy(out + i, ob, m * sizeof(float));
        }
    }
}

static void swiglu_one(const float *g, const float *u, size_t n, float limit, float *out) {
    if (ck_use_avx512()) swiglu_avx512(g, u, n, limit, out);
    else if (ck_use_avx2()) swiglu_avx2(g, u, n, limit, out);
    else ck_ref_swiglu(g, u, n, limit, out);
}

// Large calls (a prefill chunk's experts) are split over the kernel threads in chunks of
// SPLIT_SWIGLU values: elementwise, so the result is the same however it is split.
#define SPLIT_SWIGLU 8192
typedef struct {
    const float *g, *u;
    size_t n;
    float limit;
    float *out;
} swiglu_job;

static void swiglu_task(void *ctx, int task) {
    const swiglu_job *j = (const swiglu_job *)ctx;
    size_t a = (size_t)task * SPLIT_SWIGLU, b = a + SPLIT_SWIGLU < j->n ? a + SPLIT_SWIGLU : j->n;
    swiglu_one(j->g + a, j->u + a, b - a, j->limit, j->out + a);
}

void ck_swiglu(const float *g, const float *u, size_t n, float limit, float *out) {
    if (n < 4 * SPLIT_SWIGLU || ck_pool_threads() < 2) {
        swiglu_one(g, u, n, limit, out);
        return;
    }
    swiglu_job j = {g, u, n, limit, out};
    ck_pool_run((int)((n + SPLIT_SWIGLU - 1) / SPLIT_SWIGLU), swiglu_task, &j);
}

// MARK: - RMSNorm

// Each implementation reads x and writes o (o == x: in place; every value is read before its
// own index is written).
static void ref_rmsnorm_to(const float *x, float *o, size_t n, const float *w, float eps) {
    float ss = 0;
    for (size_t i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++) o[i] = w ? w[i] * (x[i] * scale) : x[i] * scale;
}

void ck_ref_rmsnorm(float *x, size_t n, const float *w, float eps) { ref_rmsnorm_to(x, x, n, w, eps); }

TGT static void rmsnorm_avx512(const float *x, float *o, size_t n, const float *w, float eps) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_fmadd_ps(v0, v0, a0);
        a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = i + 16 <= n ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        a0 = _mm512_fmadd_ps(v, v, a0);
    }
    float ss = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    __m512 sc = _mm512_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), sc);
        if (w) v = _mm512_mul_ps(_mm512_loadu_ps(w + i), v);
        _mm512_storeu_ps(o + i, v);
    }
    for (; i < n; i += 16) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), sc);
        if (w) v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i), v);
        _mm512_mask_storeu_ps(o + i, m, v);
    }
}

// AVX2: four 8-lane accumulators (the sum's order differs from the twin's: within fp32
// rounding, as the AVX-512 path).
__attribute__((target("avx2,fma"))) static void rmsnorm_avx2(const float *x, float *o, size_t n, const float *w, float eps) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
        a2 = _mm256_fmadd_ps(v2, v2, a2);
        a3 = _mm256_fmadd_ps(v3, v3, a3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(v, v, a0);
    }
    __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float ss = _mm_cvtss_f32(h);
    for (; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    __m256 sc = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), sc);
        if (w) v = _mm256_mul_ps(_mm256_loadu_ps(w + i), v);
        _mm256_storeu_ps(o + i, v);
    }
    for (; i < n; i++) o[i] = w ? w[i] * (x[i] * scale) : x[i] * scale;
}

static void rmsnorm_to(const float *x, float *o, size_t n, const float *w, float eps) {
    if (ck_use_avx512()) rmsnorm_avx512(x, o, n, w, eps);
    else if (ck_use_avx2()) rmsnorm_avx2(x, o, n, w, eps);
    else ref_rmsnorm_to(x, o, n, w, eps);
}

void ck_rmsnorm(float *x, size_t n, const float *w, float eps) { rmsnorm_to(x, x, n, w, eps); }

typedef struct {
    const float *x;
    float *out;
    size_t ldx, ldo, rows, n, per_task;
    const float *w;
    float eps;
} rmsnorm_job;

static void rmsnorm_task(void *ctx, int task) {
    const rmsnorm_job *j = (const rmsnorm_job *)ctx;
    size_t a = (size_t)task * j->per_task, b = a + j->per_task < j->rows ? a + j->per_task : j->rows;
    for (size_t r = a; r < b; r++) rmsnorm_to(j->x + r * j->ldx, j->out + r * j->ldo, j->n, j->w, j->eps);
}

void ck_rmsnorm_rows_to(const float *x, size_t ldx, size_t rows, size_t n, const float *w, float eps, float *out,
                        size_t ldo) {
    // Rows are independent: split over the kernel threads once there is enough work.
    size_t per_task = n == 0 ? rows : (16384 + n - 1) / n;
    if (rows <= per_task || ck_pool_threads() < 2) {
        for (size_t r = 0; r < rows; r++) rmsnorm_to(x + r * ldx, out + r * ldo, n, w, eps);
        return;
    }
    rmsnorm_job j = {x, out, ldx, ldo, rows, n, per_task, w, eps};
    ck_pool_run((int)((rows + per_task - 1) / per_task), rmsnorm_task, &j);
}

void ck_rmsnorm_rows(float *x, size_t rows, size_t n, size_t ld, const float *w, float eps) {
    ck_rmsnorm_rows_to(x, ld, rows, n, w, eps, x, ld);
}

// MARK: - RoPE (partial, interleaved pairs, on the last `dim` values of each head)

void ck_ref_rope(float *x, size_t heads, size_t stride, size_t width, size_t dim, const float *inv_freq, float pos,
                 float factor, int inverse) {
    for (size_t h = 0; h < heads; h++) {
        float *r = x + h * stride + (width - dim);
        for (size_t i = 0; i < dim / 2; i++) {
            float theta = pos * inv_freq[i];
            float c = cosf(theta) * factor, s = sinf(theta) * factor;
            if (inverse) s = -s;
            float a = r[2 * i], b = r[2 * i + 1];
            r[2 * i] = a * c - b * s;
            r[2 * i + 1] = b * c + a * s;
        }
    }
}

// The fast path computes each angle's cos and sin once for all heads; the rotation is the
// same arithmetic, so it is bit-identical to the twin.
void ck_rope(float *x, size_t heads, size_t stride, size_t width, size_t dim, const float *inv_freq, float pos,
             float factor, int inverse) {
    if (!ck_use_avx512() || heads <= 1) {
        ck_ref_rope(x, heads, stride, width, dim, inv_freq, pos, factor, inverse);
        return;
    }
    size_t half = dim / 2;
    float cs_stack[2 * 256];
    float *cs = half <= 256 ? cs_stack : malloc(2 * half * sizeof(float));
    for (size_t i = 0; i < half; i++) {
        float theta = pos * inv_freq[i];
        float s = sinf(theta) * factor;
        cs[2 * i] = cosf(theta) * factor;
        cs[2 * i + 1] = inverse ? -s : s;
    }
    for (size_t h = 0; h < heads; h++) {
        float *r = x + h * stride + (width - dim);
        for (size_t i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = r[2 * i], b = r[2 * i + 1];
            r[2 * i] = a * c - b * s;
            r[2 * i + 1] = b * c + a * s;
        }
    }
    if (cs != cs_stack) free(cs);
}

// MARK: - top-k (largest first; equal scores: lower index first)

static inline int before(const float *s, int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); }

void ck_ref_topk(const float *s, size_t n, size_t k, int32_t *out) {
    if (k > n) k = n;
    int32_t *all = malloc((n ? n : 1) * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) all[i] = (int32_t)i;
    // A stable insertion sort of every index: the plainest definition of the order.
    for (size_t i = 1; i < n; i++) {
        int32_t v = all[i];
        size_t j = i;
        while (j > 0 && before(s, v, all[j - 1])) { all[j] = all[j - 1]; j--; }
        all[j] = v;
    }
    memcpy(out, all, k * sizeof(int32_t));
    free(all);
}

// A min-heap (by `before`) of the best k seen, then the heap sorted: O(n log k).
static void sift_down(const float *s, int32_t *h, size_t k, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && before(s, h[w], h[l])) w = l;
        if (r < k && before(s, h[w], h[r])) w = r;
        if (w == i) return;
        int32_t t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

void ck_topk(const float *s, size_t n, size_t k, int32_t *out) {
    if (k > n) k = n;
    if (k == 0) return;
    // heap root = the worst of the kept ones
    for (size_t i = 0; i < k; i++) out[i] = (int32_t)i;
    for (size_t i = k / 2; i-- > 0;) sift_down(s, out, k, i);
    for (size_t i = k; i < n; i++) {
        if (before(s, (int32_t)i, out[0])) {
            out[0] = (int32_t)i;
            sift_down(s, out, k, 0);
        }
    }
    // heap sort: repeatedly move the worst to the end
    for (size_t m = k; m > 1; m--) {
        int32_t t = out[0]; out[0] = out[m - 1]; out[m - 1] = t;
        sift_down(s, out, m - 1, 0);
    }
}

// MARK: - Lightning Indexer score
//
// out[s] = Σ_h max(q_h · key_s, 0) · scale · w_h, heads in order; each dot as ck_dot_f32.

void ck_ref_indexer_scores(const float *q, size_t H, size_t d, const float *w, float scale, const float *const *keys,
                           size_t n, float *out) {
    for (size_t s = 0; s < n; s++) {
        float total = 0;
        for (size_t h = 0; h < H; h++) {
            float qk = ck_ref_dot_f32(q + h * d, keys[s], d);
            total += fmaxf(qk, 0.0f) * scale * w[h];
        }
        out[s] = total;
    }
}

typedef struct {
    const float *q, *w;
    size_t H, d, n, per;
    float scale;
    const float *const *keys;
    float *out;
} idx_job;

static void idx_task(void *ctx, int task) {
    const idx_job *j = (const idx_job *)ctx;
    size_t a = (size_t)task * j->per, b = a + j->per < j->n ? a + j->per : j->n;
    for (size_t s = a; s < b; s++) {
        if (s + 1 < b) _mm_prefetch((const char *)j->keys[s + 1], _MM_HINT_T0);
        float total = 0;
        for (size_t h = 0; h < j->H; h++) {
            float qk = ck_dot_f32(j->q + h * j->d, j->keys[s], j->d);
            total += fmaxf(qk, 0.0f) * j->scale * j->w[h];
        }
        j->out[s] = total;
    }
}

void ck_indexer_scores(const float *q, size_t H, size_t d, const float *w, float scale, const float *const *keys,
                       size_t n, float *out) {
    if (!ck_use_avx512()) {
        ck_ref_indexer_scores(q, H, d, w, scale, keys, n, out);
        return;
    }
    idx_job j = {q, w, H, d, n, 0, scale, keys, out};
    int threads = ck_pool_threads();
    size_t work = n * H * d;
    size_t tasks = threads > 1 && work >= ((size_t)1 << 16) ? (size_t)threads * 4 : 1;
    j.per = (n + tasks - 1) / tasks;
    if (j.per == 0) j.per = 1;
    ck_pool_run((int)((n + j.per - 1) / j.per), idx_task, &j);
}

// MARK: - compressor pooling
//
// entry[k] = Σ_i e^(score_i,k − max) · kv_i,k / Σ_i e^(score_i,k − max) over `slots` slots of
// `width` values; with `overlap`, slots ≥ m read column c + k (the own window's series) and
// the others column k. Scores of −inf (unfilled slots) are skipped.

void ck_ref_compress_pool(const float *kv, const float *score, size_t slots, size_t width, size_t c, size_t m,
                          int overlap, float *entry) {
    for (size_t k = 0; k < c; k++) {
        float mx = -INFINITY;
        for (size_t i = 0; i < slots; i++) {
            size_t col = (overlap && i >= m) ? c + k : k;
            mx = fmaxf(mx, score[i * width + col]);
        }
        float denom = 0, acc = 0;
        for (size_t i = 0; i < slots; i++) {
            size_t col = (overlap && i >= m) ? c + k : k;
            float sc = score[i * width + col];
            if (sc == -INFINITY) continue;
            float e = expf(sc - mx);
            denom += e;
            acc += e * kv[i * width + col];
        }
        entry[k] = acc / denom;
    }
}

TGT static void compress_pool_avx512(const float *kv, const float *score, size_t slots, size_t width, size_t c,
                                     size_t m, int overlap, float *entry) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (size_t k = 0; k < c; k += 16) {
        __mmask16 msk = k + 16 <= c ? (__mmask16)0xFFFF : (__mmask16)((1u << (c - k)) - 1);
        __m512 mx = ninf;
        for (size_t i = 0; i < slots; i++) {
            size_t col = (overlap && i >= m) ? c + k : k;
            mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, msk, score + i * width + col));
        }
        __m512 denom = _mm512_setzero_ps(), acc = _mm512_setzero_ps();
        for (size_t i = 0; i < slots; i++) {
            size_t col = (overlap && i >= m) ? c + k : k;
            __m512 sc = _mm512_mask_loadu_ps(ninf, msk, score + i * width + col);
            __mmask16 live = _mm512_cmp_ps_mask(sc, ninf, _CMP_NEQ_OQ) & msk;
            __m512 e = _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(sc, mx)));
            denom = _mm512_add_ps(denom, e);
            acc = _mm512_fmadd_ps(e, _mm512_maskz_loadu_ps(live, kv + i * width + col), acc);
        }
        _mm512_mask_storeu_ps(entry + k, msk, _mm512_div_ps(acc, denom));
    }
}

void ck_compress_pool(const float *kv, const float *score, size_t slots, size_t width, size_t c, size_t m, int overlap,
                      float *entry) {
    if (ck_use_avx512()) compress_pool_avx512(kv, score, slots, width, c, m, overlap, entry);
    else ck_ref_compress_pool(kv, score, slots, width, c, m, overlap, entry);
}

// MARK: - Sinkhorn projection of `count` n×n matrices
//
// Columns normalised, then (iterations − 1) × (rows, columns), eps in every denominator.
// The fast path runs 16 matrices in the 16 lanes of each vector with the twin's operation
// order, so it is bit-identical to the twin.

void ck_ref_sinkhorn(float *C, size_t count, size_t n, int iterations, float eps) {
    for (size_t b = 0; b < count; b++) {
        float *M = C + b * n * n;
        for (int it = 0; it < (iterations > 1 ? iterations : 1); it++) {
            if (it > 0) {
                for (size_t i = 0; i < n; i++) {
                    float s = 0;
                    for (size_t j = 0; j < n; j++) s += M[i * n + j];
                    for (size_t j = 0; j < n; j++) M[i * n + j] /= (s + eps);
                }
            }
            for (size_t j = 0; j < n; j++) {
                float s = 0;
                for (size_t i = 0; i < n; i++) s += M[i * n + j];
                for (size_t i = 0; i < n; i++) M[i * n + j] /= (s + eps);
            }
        }
    }
}

TGT static void sinkhorn16(float *C, size_t lanes, size_t n, int iterations, float eps) {
    // v[e] holds element e of the lanes' matrices (gathered with a stride of n·n).
    size_t nn = n * n;
    __m512 v[64];
    __mmask16 lm = lanes >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << lanes) - 1);
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32((int)nn));
    for (size_t e = 0; e < nn; e++) v[e] = _mm512_mask_i32gather_ps(_mm512_set1_ps(1.0f), lm, idx, C + e, 4);
    const __m512 ve = _mm512_set1_ps(eps);
    for (int it = 0; it < (iterations > 1 ? iterations : 1); it++) {
        if (it > 0) {
            for (size_t i = 0; i < n; i++) {
                __m512 s = _mm512_setzero_ps();
                for (size_t j = 0; j < n; j++) s = _mm512_add_ps(s, v[i * n + j]);
                s = _mm512_add_ps(s, ve);
                for (size_t j = 0; j < n; j++) v[i * n + j] = _mm512_div_ps(v[i * n + j], s);
            }
        }
        for (size_t j = 0; j < n; j++) {
            __m512 s = _mm512_setzero_ps();
            for (size_t i = 0; i < n; i++) s = _mm512_add_ps(s, v[i * n + j]);
            s = _mm512_add_ps(s, ve);
            for (size_t i = 0; i < n; i++) v[i * n + j] = _mm512_div_ps(v[i * n + j], s);
        }
    }
    for (size_t e = 0; e < nn; e++) _mm512_mask_i32scatter_ps(C + e, lm, idx, v[e], 4);
}

static void sinkhorn_one(float *C, size_t count, size_t n, int iterations, float eps) {
    if (!ck_use_avx512() || n * n > 64) {
        ck_ref_sinkhorn(C, count, n, iterations, eps);
        return;
    }
    for (size_t b = 0; b < count; b += 16) sinkhorn16(C + b * n * n, count - b < 16 ? count - b : 16, n, iterations, eps);
}

// Tokens are independent; a chunk's tokens are split over the kernel threads in groups of a
// multiple of 16 (the vector path's batch), so the result does not depend on the split.
#define SPLIT_SINKHORN 64
typedef struct {
    float *C;
    size_t count, n;
    int iterations;
    float eps;
} sinkhorn_job;

static void sinkhorn_task(void *ctx, int task) {
    const sinkhorn_job *j = (const sinkhorn_job *)ctx;
    size_t a = (size_t)task * SPLIT_SINKHORN, b = a + SPLIT_SINKHORN < j->count ? a + SPLIT_SINKHORN : j->count;
    sinkhorn_one(j->C + a * j->n * j->n, b - a, j->n, j->iterations, j->eps);
}

void ck_sinkhorn(float *C, size_t count, size_t n, int iterations, float eps) {
    if (count < 2 * SPLIT_SINKHORN || ck_pool_threads() < 2) {
        sinkhorn_one(C, count, n, iterations, eps);
        return;
    }
    sinkhorn_job j = {C, count, n, iterations, eps};
    ck_pool_run((int)((count + SPLIT_SINKHORN - 1) / SPLIT_SINKHORN), sinkhorn_task, &j);
}
