// fp4_floatbits.c: AVX2 one-token FP4 (E2M1, E8M0 per 32) products, one core, thread CPU time,
// best of 41, weights in L3: the kernel before 2026-12-08 (integers sign-extended, converted,
// times the scale; copied here) against fp4x (ck_matmul_scaled: codes looked up as the top two
// bytes of their fp32 values and widened by unpacks with zero, x pre-multiplied by the scales
// in use) and against the same decoder with the values multiplied by the scale instead (what
// ck_matmul_scaled does below 16 rows and for 2-8 tokens; run here on 8-row calls), 2026-12-08,
// Zen 3: 8.6 / 12.3 / 13.8 Gweights/s at 4,096 × 2,048. All three give the same bits (checked).
// Build and run ([K N]):
//   clang -O3 -o /tmp/fb bench/fp4_floatbits.c kernels/*.c -Ikernels/include -Ikernels -lpthread -lm
//   /tmp/fb; /tmp/fb 2048 2048; /tmp/fb 4096 2048
#include "../kernels/include/ckernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TGT __attribute__((target("avx2,fma")))
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

TGT static inline float hsum(__m256 s) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

// The kernel before 2026-12-08 (quant.c's q4_rows32): doubled E2M1 integers by pshufb,
// sign-extended, converted, times half the block scale.
static float e8m0_half[256];
TGT static inline void fp4_ints32(const uint8_t *p, __m128i *q0, __m128i *q1) {
    const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i lo = _mm_and_si128(v, low4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
    *q0 = _mm_shuffle_epi8(lut, _mm_unpacklo_epi8(lo, hi));
    *q1 = _mm_shuffle_epi8(lut, _mm_unpackhi_epi8(lo, hi));
}
#define FP4_W8(q, f) _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), f)
TGT static void ints(const float *x0, size_t K, const uint8_t *w, const uint8_t *sc, size_t N, float *y) {
    size_t rb = K / 2, nb = K / 32;
    for (size_t n = 0; n + 4 <= N; n += 4) {
        __m256 a[4];
        for (int j = 0; j < 4; j++) a[j] = _mm256_setzero_ps();
        for (size_t blk = 0; blk < nb; blk++) {
            const float *x = x0 + blk * 32;
            if (blk % 4 == 0)
                for (int j = 0; j < 4; j++) _mm_prefetch((const char *)w + (n + j + 4) * rb + blk * 16, _MM_HINT_T0);
            for (int j = 0; j < 4; j++) {
                __m256 f = _mm256_broadcast_ss(&e8m0_half[sc[(n + j) * nb + blk]]);
                __m128i q0, q1;
                fp4_ints32(w + (n + j) * rb + blk * 16, &q0, &q1);
                a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x), FP4_W8(q0, f), a[j]);
                a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), FP4_W8(_mm_unpackhi_epi64(q0, q0), f), a[j]);
                a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), FP4_W8(q1, f), a[j]);
                a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), FP4_W8(_mm_unpackhi_epi64(q1, q1), f), a[j]);
            }
        }
        for (int j = 0; j < 4; j++) y[n + j] = hsum(a[j]);
    }
}

int main(int argc, char **argv) {
    size_t K = argc > 1 ? (size_t)atol(argv[1]) : 4096, N = argc > 2 ? (size_t)atol(argv[2]) : 2048;
    size_t rb = K / 2, nb = K / 32;
    uint8_t *w = malloc(N * rb), *sc = malloc(N * nb);
    for (size_t i = 0; i < N * rb; i++) w[i] = (uint8_t)rand();
    for (int b = 0; b < 256; b++) e8m0_half[b] = b == 255 ? NAN : ldexpf(1.0f, b - 128);
    uint8_t e0 = 120, ne = 8;
    for (size_t i = 0; i < N * nb; i++) sc[i] = (uint8_t)(e0 + rand() % ne);
    ck_scales s = {sc, 0, nb, 1, 32, 0};
    float *x = malloc(K * 4);
    float *y0 = malloc(N * 4), *y1 = malloc(N * 4), *y2 = malloc(N * 4);
    for (size_t i = 0; i < K; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    double best[3] = {1e9, 1e9, 1e9};
    for (int r = 0; r < 41; r++) {
        double t0 = cpu();
        ints(x, K, w, sc, N, y0);
        double t = cpu() - t0;
        best[0] = t < best[0] ? t : best[0];
        t0 = cpu();
        for (size_t n = 0; n < N; n += 8) {  // under 16 rows x is only permuted: values × scale
            ck_scales s8 = s;
            s8.row0 = n;
            ck_matmul_scaled(x, K, 1, K, w + n * rb, CK_DTYPE_FP4E2M1, &s8, 8, y1 + n, N);
        }
        t = cpu() - t0;
        best[1] = t < best[1] ? t : best[1];
        t0 = cpu();
        ck_matmul_scaled(x, K, 1, K, w, CK_DTYPE_FP4E2M1, &s, N, y2, N);  // fp4x
        t = cpu() - t0;
        best[2] = t < best[2] ? t : best[2];
    }
    size_t d1 = 0, d2 = 0;
    for (size_t n = 0; n < N; n++) {
        d1 += memcmp(&y0[n], &y1[n], 4) != 0;
        d2 += memcmp(&y0[n], &y2[n], 4) != 0;
    }
    const char *nm[3] = {"integers converted (before)", "values x scale (8-row calls)", "fp4x (x per exponent)"};
    for (int i = 0; i < 3; i++)
        printf("%-28s %.3f ms  %.2f GB/s of weights  %.2f Gweights/s\n", nm[i], best[i] * 1e3, N * rb / best[i] / 1e9,
               N * K / best[i] / 1e9);
    printf("K %zu N %zu (%s): rows differing from the integer kernel: values x scale %zu, fp4x %zu\n", K, N,
           ck_impl_name(), d1, d2);
    return d1 || d2;
}
