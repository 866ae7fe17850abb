// zmm_pairs.c: throughput of the 512-bit operations FP4 decoding is made of, alone and in pairs
// with an FMA (independent chains, so only throughput counts). On Zen 4 (2026-12-07, ~3.6 GHz):
// vpermd, vpermw, vfmadd and vpmovzxbd each run one per cycle alone (0.28 ns), vpsrld faster
// (0.21 ns); an FMA paired with a vpermd takes 0.47 ns, with a vpmovzxbd 0.43-0.44, with a vpsrld
// 0.37, and vpermd with vpmovzxbd 0.55: the first three share the 512-bit pipes, so an FP4 row's
// 32 weights (vpmovzxbd, 2 x vpermd, vpsrld, 2 x FMA) cost ~5 cycles however they are scheduled.
// Build and run:
//   clang -O2 -o /tmp/zmm_pairs bench/zmm_pairs.c && /tmp/zmm_pairs
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl")))
#define N 200000000L
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define KEEP4(a) __asm__ volatile("" ::"v"(a[0]), "v"(a[1]), "v"(a[2]), "v"(a[3]))

// ns per operation, 8 independent chains (more than any of their latencies in cycles).
#define ALONE(NAME, T, INIT, OP)                                                                   \
    TGT static double NAME(void) {                                                                 \
        T a[8];                                                                                    \
        for (int i = 0; i < 8; i++) a[i] = INIT;                                                   \
        const __m512i t = _mm512_set1_epi32(3);                                                    \
        const __m512 b = _mm512_set1_ps(0.999f);                                                   \
        (void)t;                                                                                   \
        (void)b;                                                                                   \
        double t0 = now();                                                                         \
        for (long n = 0; n < N / 8; n++) {                                                         \
            for (int i = 0; i < 8; i++) a[i] = OP;                                                 \
            KEEP4(a);                                                                              \
            KEEP4((a + 4));                                                                        \
        }                                                                                          \
        return (now() - t0) / N * 1e9;                                                             \
    }
ALONE(alone_vpermd, __m512i, _mm512_set1_epi32(i), _mm512_permutexvar_epi32(a[i], t))
ALONE(alone_vpermw, __m512i, _mm512_set1_epi32(i), _mm512_permutexvar_epi16(a[i], t))
ALONE(alone_fma, __m512, _mm512_set1_ps((float)i), _mm512_fmadd_ps(a[i], b, b))
ALONE(alone_zx, __m512i, _mm512_set1_epi32(i), _mm512_cvtepu8_epi32(_mm512_castsi512_si128(a[i])))
ALONE(alone_srl, __m512i, _mm512_set1_epi32(i), _mm512_srli_epi32(a[i], 1))

// ns per pair: an operation of `kind` (0 vpermd, 3 vpmovzxbd, 4 vpsrld, 6 vpsrlvd) and an FMA, or (kind 5) a vpermd and a vpmovzxbd;
// 4 chains of each.
TGT static double paired(int kind) {
    __m512i a[4], c[4];
    __m512 f[4];
    for (int i = 0; i < 4; i++) { a[i] = c[i] = _mm512_set1_epi32(i); f[i] = _mm512_set1_ps((float)i); }
    const __m512i t = _mm512_set1_epi32(3);
    const __m512 b = _mm512_set1_ps(0.999f);
    double t0 = now();
    for (long n = 0; n < N / 4; n++) {
        for (int i = 0; i < 4; i++) {
            switch (kind) {
            case 0: a[i] = _mm512_permutexvar_epi32(a[i], t); f[i] = _mm512_fmadd_ps(f[i], b, b); break;
            case 3: a[i] = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(a[i])); f[i] = _mm512_fmadd_ps(f[i], b, b); break;
            case 4: a[i] = _mm512_srli_epi32(a[i], 1); f[i] = _mm512_fmadd_ps(f[i], b, b); break;
            case 6: a[i] = _mm512_srlv_epi32(a[i], t); f[i] = _mm512_fmadd_ps(f[i], b, b); break;
            default: a[i] = _mm512_permutexvar_epi32(a[i], t); c[i] = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(c[i])); break;
            }
        }
        KEEP4(a);
        KEEP4(c);
        KEEP4(f);
    }
    return (now() - t0) / N * 1e9;
}

int main(void) {
    printf("ns per op alone: vpermd %.3f  vpermw %.3f  fma %.3f  vpmovzxbd %.3f  vpsrld %.3f\n", alone_vpermd(), alone_vpermw(),
           alone_fma(), alone_zx(), alone_srl());
    printf("ns per pair: vpermd+fma %.3f  vpmovzxbd+fma %.3f  vpsrld+fma %.3f  vpsrlvd+fma %.3f  vpermd+vpmovzxbd %.3f\n",
           paired(0), paired(3), paired(4), paired(6), paired(5));
    return 0;
}
