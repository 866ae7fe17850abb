// fp4_decoders.c: FP4 (E2M1, one E8M0 scale per 32 values, tables of scaled values) one-token
// product loops on AVX-512, four rows interleaved (eight FMA chains) over 128 KB of weights in
// L2: ns per 32 values for the decoder kernels/quant_lanes.c uses and the alternatives tried on
// Zen 4 (bench/RESULTS.md, "Performance round two (issue 16) on AVX-512 again"). The first line
// is the two FMAs and one widening alone (no table permutes): the floor. The alternatives read
// the nibbles in other orders, so their checksums differ (a speed test only). Build and run:
//   clang -O3 -o /tmp/fp4d bench/fp4_decoders.c && /tmp/fp4d
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi")))
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static float tab[256][16] __attribute__((aligned(64)));
#define R 4

// One variant: SETUP once, then per row and 32 values (16 bytes at p, scaled table t) the two
// weight vectors WA and WB.
#define VARIANT(NAME, SETUP, WA, WB)                                                                      \
    TGT static float NAME(const uint8_t *w, const float *xp, const uint8_t *sb, int K, int N) {           \
        SETUP;                                                                                        \
        __m512 acc = _mm512_setzero_ps();                                                             \
        for (int n = 0; n < N; n += R) {                                                              \
            __m512 a[R], b[R];                                                                        \
            for (int r = 0; r < R; r++) a[r] = b[r] = _mm512_setzero_ps();                             \
            for (int k = 0, j = 0; k < K; k += 32, j++) {                                             \
                __m512 xa = _mm512_loadu_ps(xp + k), xb = _mm512_loadu_ps(xp + k + 16);               \
                for (int r = 0; r < R; r++) {                                                         \
                    const uint8_t *p = w + (size_t)(n + r) * K / 2 + k / 2;                           \
                    __m512 t = _mm512_load_ps(tab[sb[(n + r) * (K / 32) + j]]);                       \
                    __m128i v = _mm_loadu_si128((const __m128i *)p);                                   \
                    (void)t, (void)v;                                                                 \
                    a[r] = _mm512_fmadd_ps(xa, WA, a[r]);                                             \
                    b[r] = _mm512_fmadd_ps(xb, WB, b[r]);                                             \
                }                                                                                     \
            }                                                                                         \
            for (int r = 0; r < R; r++) acc = _mm512_add_ps(acc, _mm512_add_ps(a[r], b[r]));           \
        }                                                                                             \
        return _mm512_reduce_add_ps(acc);                                                             \
    }

// The floor: the FMAs, the table load and one widening, no permutes.
VARIANT(floor_only, (void)0, t, _mm512_castsi512_ps(_mm512_cvtepu8_epi32(v)))
// Used: bytes widened to 32 bits, low nibbles index the table, then high ones after a shift.
VARIANT(widen_shift, (void)0, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(v), t),
        _mm512_permutexvar_ps(_mm512_srli_epi32(_mm512_cvtepu8_epi32(v), 4), t))
// 16 bytes broadcast to the 4 lanes, a variable shift per lane picks each lane's byte.
VARIANT(broadcast_srlv,
        const __m512i sh0 = _mm512_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24);
        const __m512i sh1 = _mm512_add_epi32(sh0, _mm512_set1_epi32(4)),
        _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_broadcast_i32x4(v), sh0), t),
        _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_broadcast_i32x4(v), sh1), t))
// 16 bytes broadcast, vpmultishiftqb moves two nibbles into each qword's dword index bits.
TGT static __m512i multishift_control(int high) {
    uint64_t c[8];
    for (int i = 0; i < 8; i++) {
        uint64_t L = (uint64_t)i / 2, base = high ? 32 : 0;
        c[i] = (base + 8 * L) | ((base + 8 * L + 4) << 32);
    }
    return _mm512_loadu_si512(c);
}
VARIANT(broadcast_multishift, const __m512i CA = multishift_control(0); const __m512i CB = multishift_control(1),
        _mm512_permutexvar_ps(_mm512_multishift_epi64_epi8(CA, _mm512_broadcast_i32x4(v)), t),
        _mm512_permutexvar_ps(_mm512_multishift_epi64_epi8(CB, _mm512_broadcast_i32x4(v)), t))
// The shift on the 16 bytes (128 bits) first, then two widenings.
VARIANT(xmm_shift, (void)0, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(v), t),
        _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_srli_epi16(v, 4)), t))

int main(void) {
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vbmi")) {
        printf("fp4_decoders: needs AVX-512 F/BW/VBMI (this CPU has not)\n");
        return 0;
    }
    int K = 1024, N = 256;  // 128 KB of FP4: L2
    uint8_t *w = aligned_alloc(64, (size_t)N * K / 2), *sb = malloc((size_t)N * K / 32);
    float *x = aligned_alloc(64, (size_t)K * 4);
    for (int i = 0; i < N * K / 2; i++) w[i] = (uint8_t)rand();
    for (int i = 0; i < N * K / 32; i++) sb[i] = (uint8_t)(120 + rand() % 8);
    for (int i = 0; i < K; i++) x[i] = rand() / (float)RAND_MAX;
    for (int v = 0; v < 256; v++)
        for (int i = 0; i < 16; i++) tab[v][i] = i * 0.5f;
    float (*f[5])(const uint8_t *, const float *, const uint8_t *, int, int) = {floor_only, widen_shift, broadcast_srlv,
                                                                               broadcast_multishift, xmm_shift};
    const char *names[5] = {"FMAs + widening only (floor)", "widen + shift + 2 vpermps (used)", "broadcast + 2 vpsrlvd + 2 vpermps",
                            "broadcast + 2 vpmultishiftqb + 2 vpermps", "xmm shift + 2 widenings + 2 vpermps"};
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < 5; i++) {
            double best = 1e9;
            float s = 0;
            for (int r = 0; r < 200; r++) {
                double t0 = now();
                s += f[i](w, x, sb, K, N);
                double t = now() - t0;
                if (t < best) best = t;
            }
            printf("%-42s %.3f ns per 32 values, %.1f GB/s of FP4 (checksum %g)\n", names[i], best * 1e9 / (N * K / 32.0),
                   N * K / 2 / best / 1e9, s);
        }
    return 0;
}
