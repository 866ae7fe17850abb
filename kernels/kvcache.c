// kvcache.c: the stored formats of compressed KV entries (--kv-cache-dtype). An entry is the
// pooled, normed, RoPE'd vector of one compressor window: `d` values whose last `rope` are
// the rotated dims.
//
//   f32:  d floats (exact; the default).
//   bf16: d bf16 values (round to nearest even).
//   fp8:  as the DeepSeek-V4 paper stores its KV cache: the d − rope non-RoPE values in OCP
//         E4M3 with one f32 scale per entry (amax / 448, round to nearest even, saturating),
//         the rope values in BF16. Bytes: [scale f32][d − rope E4M3][rope BF16], padded to 4.
//
// Indexer keys have their own tiled formats (kernels/indexer*.c).
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include "internal.h"

size_t ck_kv_entry_bytes(ck_kv_format f, size_t d, size_t rope) {
    switch (f) {
    case CK_KV_BF16: return (2 * d + 3) / 4 * 4;
    case CK_KV_FP8: return (4 + (d - rope) + 2 * rope + 3) / 4 * 4;
    default: return 4 * d;
    }
}

uint8_t ck_f32_to_e4m3(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    uint8_t sign = (uint8_t)((b >> 24) & 0x80u);
    float a = fabsf(x);
    if (a != a) return sign | 0x7F;                     // NaN
    if (a >= 464.0f) return sign | 0x7E;                // saturate at 448 (464: the midpoint to 480)
    if (a < 0.015625f) return sign | (uint8_t)nearbyintf(a * 512.0f);  // subnormals: k · 2^-9, k ≤ 8
    uint32_t ab = b & 0x7FFFFFFFu;
    ab += 0x7FFFFu + ((ab >> 20) & 1u);                 // round the mantissa to 3 bits, nearest even
    uint32_t e = (ab >> 23) - 127 + 7, m = (ab >> 20) & 7u;
    return sign | (uint8_t)(e << 3 | m);
}

void ck_kv_store(ck_kv_format f, const float *v, size_t d, size_t rope, void *dst) {
    if (f == CK_KV_F32) {
        memcpy(dst, v, d * sizeof(float));
    } else if (f == CK_KV_BF16) {
        uint16_t *o = dst;
        for (size_t i = 0; i < d; i++) o[i] = ck_f32_to_bf16(v[i]);
    } else {
        size_t nope = d - rope;
        float amax = 0;
        for (size_t i = 0; i < nope; i++) amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
        float scale = amax / 448.0f, inv = amax > 0 ? 448.0f / amax : 0;
        uint8_t *o = dst;
        memcpy(o, &scale, 4);
        for (size_t i = 0; i < nope; i++) o[4 + i] = ck_f32_to_e4m3(v[i] * inv);
        uint8_t *r = o + 4 + nope;
        for (size_t i = 0; i < rope; i++) {
            uint16_t h = ck_f32_to_bf16(v[nope + i]);
            memcpy(r + 2 * i, &h, 2);
        }
    }
}

static float e4m3_table[256];
static void e4m3_table_init(void) {
    for (int b = 0; b < 256; b++) e4m3_table[b] = ck_e4m3_to_f32((uint8_t)b);
}

// E4M3 (s eeee mmm) shifted into FP16 (s eeeee mmmmmmmmmm) is the same value × 2^-8, subnormals
// included (bias 7 against 15), so F16C converts 8 codes at once; × (scale · 256) then rounds
// once, as the table's value × scale does: the same bits as the scalar loop.
__attribute__((target("avx2,f16c"))) static void load_e4m3_f16c(const uint8_t *codes, size_t n, float scale, float *out) {
    const __m256 s = _mm256_set1_ps(scale * 256.0f);
    const __m128i sign = _mm_set1_epi16(0x80), mag = _mm_set1_epi16(0x7F);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i w = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(codes + i)));
        __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(w, sign), 8), _mm_slli_epi16(_mm_and_si128(w, mag), 7));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtph_ps(h), s));
    }
    for (; i < n; i++) out[i] = e4m3_table[codes[i]] * scale;
}

__attribute__((target("avx2"))) static void load_bf16_avx2(const uint16_t *v, size_t n, float *out) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(v + i)));
        _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; i++) {
        uint32_t bits = (uint32_t)v[i] << 16;
        memcpy(out + i, &bits, 4);
    }
}

static int use_f16c(void) {
    static int f16c = -1;  // the CPU's answer, asked once
    if (f16c < 0) f16c = __builtin_cpu_supports("f16c") ? 1 : 0;
    return f16c && (ck_use_avx2() || ck_use_avx512());
}

void ck_kv_load(ck_kv_format f, const void *src, size_t d, size_t rope, float *out) {
    if (f != CK_KV_F32 && use_f16c()) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, e4m3_table_init);
        if (f == CK_KV_BF16) {
            load_bf16_avx2(src, d, out);
        } else {
            size_t nope = d - rope;
            const uint8_t *s = src;
            float scale;
            memcpy(&scale, s, 4);
            load_e4m3_f16c(s + 4, nope, scale, out);
            uint16_t r[rope + 1];
            memcpy(r, s + 4 + nope, 2 * rope);
            load_bf16_avx2(r, rope, out + nope);
        }
        return;
    }
    if (f == CK_KV_F32) {
        memcpy(out, src, d * sizeof(float));
    } else if (f == CK_KV_BF16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < d; i++) {
            uint32_t bits = (uint32_t)s[i] << 16;
            memcpy(out + i, &bits, 4);
        }
    } else {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, e4m3_table_init);
        size_t nope = d - rope;
        const uint8_t *s = src;
        float scale;
        memcpy(&scale, s, 4);
        for (size_t i = 0; i < nope; i++) out[i] = e4m3_table[s[4 + i]] * scale;
        const uint8_t *r = s + 4 + nope;
        for (size_t i = 0; i < rope; i++) {
            uint16_t h;
            memcpy(&h, r + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(out + nope + i, &bits, 4);
        }
    }
}

void ck_kv_load_many(ck_kv_format f, const void *const *src, size_t n, size_t d, size_t rope, float *out) {
    for (size_t e = 0; e < n; e++) ck_kv_load(f, src[e], d, rope, out + e * d);
}
