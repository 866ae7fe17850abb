// fp4_bf16dot.c: one-token FP4 (E2M1, one E8M0 scale per 32 values) products on AVX-512,
// the fp32 table-permute decoder of kernels/quant_lanes.c against a bf16 decoder that
// multiplies with vdpbf16ps (x in two bf16 pieces, hi + lo: 16 significant bits). Also the
// latency and throughput of vdpbf16ps and vfmadd on this core. Speed test only (the bf16
// variant rounds x to 16 bits, so the checksums differ by ~1e-5 relative). Build and run:
//   clang -O3 -o /tmp/fp4b bench/fp4_bf16dot.c && /tmp/fp4b [K] [MB]
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static float tab[256][16] __attribute__((aligned(64)));
static uint16_t btab[256][16] __attribute__((aligned(64)));

static uint16_t bf16_of(float f) { uint32_t u; memcpy(&u, &f, 4); return (uint16_t)(u >> 16); }

// The fp32 decoder as in quant_lanes.c (lanes_1): two FMA chains, one row at a time.
TGT static void fp32_perm(const uint8_t *w, const uint8_t *sb, const float *xp, int K, int N, float *y) {
    for (int n = 0; n < N; n++) {
        const uint8_t *row = w + (size_t)n * K / 2;
        const uint8_t *s = sb + (size_t)n * (K / 32);
        __m512 a = _mm512_setzero_ps(), b = a;
        for (int k = 0, j = 0; k < K; k += 32, j++) {
            __m512 t = _mm512_load_ps(tab[s[j]]);
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + k / 2)));
            a = _mm512_fmadd_ps(_mm512_loadu_ps(xp + k), _mm512_permutexvar_ps(v, t), a);
            b = _mm512_fmadd_ps(_mm512_loadu_ps(xp + k + 16), _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t), b);
        }
        y[n] = _mm512_reduce_add_ps(_mm512_add_ps(a, b));
    }
}

// bf16 decoder, R row streams N/R rows apart, four ymm chains a row: (low nibbles, high
// nibbles) × (x hi piece, x lo piece). LO/HI: the two weight vectors from the 16 widened bytes
// v and the scaled table t (the `_dots` variant skips the lookups: the floor of the dots).
#define BF16DOT(NAME, R, LO, HI)                                                                          \
    TGT static void NAME(const uint8_t *w, const uint8_t *sb, const __m256bh *xh, const __m256bh *xl, \
                                int K, int N, float *y) {                                                  \
        int Q = N / R;                                                                                     \
        for (int n = 0; n < Q; n++) {                                                                      \
            __m256 acc[R][4];                                                                              \
            for (int r = 0; r < R; r++)                                                                    \
                for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();                               \
            for (int k = 0, j = 0; k < K; k += 32, j++) {                                                  \
                __m256bh h0 = xh[2 * j], h1 = xh[2 * j + 1], l0 = xl[2 * j], l1 = xl[2 * j + 1];            \
                for (int r = 0; r < R; r++) {                                                              \
                    size_t row = (size_t)(n + r * Q);                                                      \
                    __m256i t = _mm256_load_si256((const __m256i *)btab[sb[row * (K / 32) + j]]);          \
                    __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(w + row * K / 2 + k / 2))); \
                    __m256bh lo = (__m256bh)(LO), hi = (__m256bh)(HI);                                     \
                    acc[r][0] = _mm256_dpbf16_ps(acc[r][0], lo, h0);                                       \
                    acc[r][1] = _mm256_dpbf16_ps(acc[r][1], lo, l0);                                       \
                    acc[r][2] = _mm256_dpbf16_ps(acc[r][2], hi, h1);                                       \
                    acc[r][3] = _mm256_dpbf16_ps(acc[r][3], hi, l1);                                       \
                }                                                                                          \
            }                                                                                              \
            for (int r = 0; r < R; r++) {                                                                  \
                __m256 s = _mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3])); \
                __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));             \
                q = _mm_hadd_ps(q, q);                                                                     \
                q = _mm_hadd_ps(q, q);                                                                     \
                y[n + r * Q] = _mm_cvtss_f32(q);                                                           \
            }                                                                                              \
        }                                                                                                  \
    }
#define LOOKUP_LO _mm256_permutexvar_epi16(v, t)
#define LOOKUP_HI _mm256_permutexvar_epi16(_mm256_srli_epi16(v, 4), t)
BF16DOT(bf16dot_1, 1, LOOKUP_LO, LOOKUP_HI)
BF16DOT(bf16dot_2, 2, LOOKUP_LO, LOOKUP_HI)
BF16DOT(bf16dot_4, 4, LOOKUP_LO, LOOKUP_HI)
BF16DOT(bf16dot_4_dots, 4, t, _mm256_xor_si256(t, v))

// Latency (one chain) and throughput (12 chains) of an operation, ns per operation.
#define CHAINS(NAME, TYPE, ZERO, OP, C)                                                                   \
    TGT static double NAME(long iters) {                                                                  \
        TYPE acc[C];                                                                                      \
        for (int c = 0; c < C; c++) acc[c] = ZERO;                                                        \
        TYPE u = ZERO;                                                                                    \
        __asm__ volatile("" : "+v"(u));                                                                   \
        double t0 = now();                                                                                \
        for (long i = 0; i < iters; i++)                                                                  \
            for (int c = 0; c < C; c++) acc[c] = OP;                                                      \
        double t = now() - t0;                                                                            \
        for (int c = 1; c < C; c++) acc[0] = acc[0] + acc[c];                                             \
        __asm__ volatile("" ::"v"(acc[0]));                                                               \
        return t / ((double)iters * C) * 1e9;                                                             \
    }
CHAINS(fma_z1, __m512, _mm512_setzero_ps(), _mm512_fmadd_ps(u, u, acc[c]), 1)
CHAINS(fma_z12, __m512, _mm512_setzero_ps(), _mm512_fmadd_ps(u, u, acc[c]), 12)
CHAINS(dp_z1, __m512, _mm512_setzero_ps(), _mm512_dpbf16_ps(acc[c], (__m512bh)u, (__m512bh)u), 1)
CHAINS(dp_z12, __m512, _mm512_setzero_ps(), _mm512_dpbf16_ps(acc[c], (__m512bh)u, (__m512bh)u), 12)
CHAINS(dp_y1, __m256, _mm256_setzero_ps(), _mm256_dpbf16_ps(acc[c], (__m256bh)u, (__m256bh)u), 1)
CHAINS(dp_y12, __m256, _mm256_setzero_ps(), _mm256_dpbf16_ps(acc[c], (__m256bh)u, (__m256bh)u), 12)

int main(int argc, char **argv) {
    int K = argc > 1 ? atoi(argv[1]) : 1024;
    double mb = argc > 2 ? atof(argv[2]) : 0.125;
    int N = (int)(mb * 1e6 / (K / 2)) / 4 * 4;
    if (N < 4) N = 4;
    static const float e2m1[16] = {0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.f, -.5f, -1, -1.5f, -2, -3, -4, -6};
    for (int v = 0; v < 256; v++)
        for (int i = 0; i < 16; i++) {
            float f = e2m1[i] * ((v > 20 && v < 230) ? __builtin_ldexpf(1.0f, v - 127) : 1.0f);
            tab[v][i] = f;
            btab[v][i] = bf16_of(f);
        }
    size_t wb = (size_t)N * K / 2;
    uint8_t *w = aligned_alloc(64, wb), *sb = malloc((size_t)N * K / 32);
    for (size_t i = 0; i < wb; i++) w[i] = (uint8_t)rand();
    for (size_t i = 0; i < (size_t)N * K / 32; i++) sb[i] = (uint8_t)(120 + rand() % 8);
    float *x = aligned_alloc(64, K * 4), *y = malloc(N * 4);
    __m256bh *xh = aligned_alloc(64, K * 2), *xl = aligned_alloc(64, K * 2);
    for (int k = 0; k < K; k++) x[k] = (float)rand() / (float)RAND_MAX - 0.5f;
    uint16_t *ph = (uint16_t *)xh, *pl = (uint16_t *)xl;
    for (int k = 0; k < K; k++) {  // word order of the bf16 decoder: per 32, low nibbles (even) then high (odd)
        int blk = k / 32, e = k % 32, word = blk * 32 + (e % 2) * 16 + e / 2;
        uint16_t hb = bf16_of(x[k]);
        uint32_t hu = (uint32_t)hb << 16;
        float hf;
        memcpy(&hf, &hu, 4);
        ph[word] = hb;
        pl[word] = bf16_of(x[k] - hf);
    }
    printf("K %d, %d rows, %.2f MB of FP4\n", K, N, wb / 1e6);
    long it = 20000000;
    printf("latency ns: fma zmm %.3f, dpbf16 zmm %.3f, ymm %.3f\n", fma_z1(it), dp_z1(it), dp_y1(it));
    printf("throughput ns/op (12 chains): fma zmm %.3f, dpbf16 zmm %.3f, ymm %.3f\n", fma_z12(it / 4), dp_z12(it / 4),
           dp_y12(it / 4));
    int reps = (int)(2e8 / (double)wb) + 1;
    for (int round = 0; round < 3; round++) {
        double best[5] = {1e9, 1e9, 1e9, 1e9, 1e9};
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            fp32_perm(w, sb, x, K, N, y);
            double t1 = now();
            bf16dot_1(w, sb, xh, xl, K, N, y);
            double t2 = now();
            bf16dot_2(w, sb, xh, xl, K, N, y);
            double t3 = now();
            bf16dot_4(w, sb, xh, xl, K, N, y);
            double t4 = now();
            bf16dot_4_dots(w, sb, xh, xl, K, N, y);
            double t5 = now();
            double d[5] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4};
            for (int i = 0; i < 5; i++)
                if (d[i] < best[i]) best[i] = d[i];
        }
        double per = (double)N * K / 32;
        printf("ns per 32 values (GB/s): fp32 perm %.3f (%.1f)  bf16dot 1 row %.3f (%.1f)  2 rows %.3f (%.1f)  4 rows %.3f (%.1f)  dots alone %.3f\n",
               best[0] / per * 1e9, wb / best[0] / 1e9, best[1] / per * 1e9, wb / best[1] / 1e9, best[2] / per * 1e9,
               wb / best[2] / 1e9, best[3] / per * 1e9, wb / best[3] / 1e9, best[4] / per * 1e9);
    }
    return 0;
}
