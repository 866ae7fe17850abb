// int8_throughput.c: the issue rates that bound the 8-bit indexer on an AVX2 machine:
// vpmaddubsw, vpmaddwd and fp32 FMA, each as 8 independent chains (enough to cover their
// latency), and vpmaddubsw mixed with vpaddw. The fp32 FMA line is the reference: 2 per cycle
// on Zen 3 and Intel cores. The indexer's 8-bit kernel needs 16 vpmaddubsw + 8 vpmaddwd per
// key of 8 heads × 64 dimensions (kernels/indexer_lowp.c), so its floor is 12 cycles per key
// per core at 2 multiplies per cycle. Build and run:
//   clang -O2 -o /tmp/i8tp bench/int8_throughput.c && /tmp/i8tp
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define CHAINS(BODY) for (long n = 0; n < N; n++) for (int i = 0; i < 8; i++) { BODY; __asm__ volatile("" : "+x"(a[i])); }
__attribute__((target("avx2,fma"))) int main(void) {
    __m256i a[8], b = _mm256_set1_epi8(3), o = _mm256_set1_epi16(1);
    for (int i = 0; i < 8; i++) a[i] = _mm256_set1_epi8((char)i);
    const long N = 100000000;
    double t0 = now();
    CHAINS(a[i] = _mm256_maddubs_epi16(a[i], b))
    double t1 = now();
    CHAINS(a[i] = _mm256_madd_epi16(a[i], o))
    double t2 = now();
    CHAINS(a[i] = i < 4 ? _mm256_maddubs_epi16(a[i], b) : _mm256_add_epi16(a[i], b))
    double t3 = now();
    __m256 f[8], g = _mm256_set1_ps(1.0001f);
    for (int i = 0; i < 8; i++) f[i] = _mm256_set1_ps((float)i);
    for (long n = 0; n < N; n++)
        for (int i = 0; i < 8; i++) { f[i] = _mm256_fmadd_ps(f[i], g, g); __asm__ volatile("" : "+x"(f[i])); }
    double t4 = now();
    int s = 0;
    for (int i = 0; i < 8; i++) s += _mm256_extract_epi32(a[i], 0) + (int)_mm256_cvtss_f32(f[i]);
    double fma = (t4 - t3) / N / 8 * 1e9;
    printf("ns per instruction: vpmaddubsw %.3f, vpmaddwd %.3f, 4 vpmaddubsw + 4 vpaddw %.3f (per instruction), "
           "vfmadd %.3f; multiplies per FMA slot: %.2f, %.2f (%d)\n",
           (t1 - t0) / N / 8 * 1e9, (t2 - t1) / N / 8 * 1e9, (t3 - t2) / N / 8 * 1e9, fma, fma / ((t1 - t0) / N / 8 * 1e9),
           fma / ((t2 - t1) / N / 8 * 1e9), s & 1);
    return 0;
}
