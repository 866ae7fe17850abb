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
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static float tab[256][16] __attribute__((aligned(64)));
#define R 4
// V1: movzx + srli + 2 perm
TGT float v1(const uint8_t *w, const float *xp, const uint8_t *sb, int K, int N) {
    __m512 acc = _mm512_setzero_ps();
    for (int n = 0; n < N; n += R) {
        __m512 a[R], b[R]; for (int r = 0; r < R; r++) a[r] = b[r] = _mm512_setzero_ps();
        for (int k = 0, j = 0; k < K; k += 32, j++) {
            __m512 xa = _mm512_loadu_ps(xp + k), xb = _mm512_loadu_ps(xp + k + 16);
            for (int r = 0; r < R; r++) {
                const uint8_t *row = w + (size_t)(n + r) * K / 2;
                __m512 t = _mm512_load_ps(tab[sb[(n + r) * (K / 32) + j]]);
                __m512i bb = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + k / 2)));
                a[r] = _mm512_fmadd_ps(xa, _mm512_permutexvar_ps(bb, t), a[r]);
                b[r] = _mm512_fmadd_ps(xb, _mm512_permutexvar_ps(_mm512_srli_epi32(bb, 4), t), b[r]);
            }
        }
        for (int r = 0; r < R; r++) acc = _mm512_add_ps(acc, _mm512_add_ps(a[r], b[r]));
    }
    return _mm512_reduce_add_ps(acc);
}
// V2: broadcast 16 bytes to 4 lanes, variable shifts
TGT float v2(const uint8_t *w, const float *xp, const uint8_t *sb, int K, int N) {
    __m512 acc = _mm512_setzero_ps();
    const __m512i sh0 = _mm512_setr_epi32(0,0,0,0,8,8,8,8,16,16,16,16,24,24,24,24);
    const __m512i sh1 = _mm512_add_epi32(sh0, _mm512_set1_epi32(4));
    for (int n = 0; n < N; n += R) {
        __m512 a[R], b[R]; for (int r = 0; r < R; r++) a[r] = b[r] = _mm512_setzero_ps();
        for (int k = 0, j = 0; k < K; k += 32, j++) {
            __m512 xa = _mm512_loadu_ps(xp + k), xb = _mm512_loadu_ps(xp + k + 16);
            for (int r = 0; r < R; r++) {
                const uint8_t *row = w + (size_t)(n + r) * K / 2;
                __m512 t = _mm512_load_ps(tab[sb[(n + r) * (K / 32) + j]]);
                __m512i bb = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(row + k / 2)));
                a[r] = _mm512_fmadd_ps(xa, _mm512_permutexvar_ps(_mm512_srlv_epi32(bb, sh0), t), a[r]);
                b[r] = _mm512_fmadd_ps(xb, _mm512_permutexvar_ps(_mm512_srlv_epi32(bb, sh1), t), b[r]);
            }
        }
        for (int r = 0; r < R; r++) acc = _mm512_add_ps(acc, _mm512_add_ps(a[r], b[r]));
    }
    return _mm512_reduce_add_ps(acc);
}
// V0: FMAs only (x times x) to get the FMA floor
TGT float v0(const uint8_t *w, const float *xp, const uint8_t *sb, int K, int N) {
    __m512 acc = _mm512_setzero_ps();
    for (int n = 0; n < N; n += R) {
        __m512 a[R], b[R]; for (int r = 0; r < R; r++) a[r] = b[r] = _mm512_setzero_ps();
        for (int k = 0, j = 0; k < K; k += 32, j++) {
            __m512 xa = _mm512_loadu_ps(xp + k), xb = _mm512_loadu_ps(xp + k + 16);
            for (int r = 0; r < R; r++) {
                const uint8_t *row = w + (size_t)(n + r) * K / 2;
                __m512 t = _mm512_load_ps(tab[sb[(n + r) * (K / 32) + j]]);
                a[r] = _mm512_fmadd_ps(xa, t, a[r]);
                b[r] = _mm512_fmadd_ps(xb, _mm512_castsi512_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + k / 2)))), b[r]);
            }
        }
        for (int r = 0; r < R; r++) acc = _mm512_add_ps(acc, _mm512_add_ps(a[r], b[r]));
    }
    return _mm512_reduce_add_ps(acc);
}
// V7: broadcast 16 bytes, vpmultishiftqb picks the nibbles into dword low bits
TGT float v7(const uint8_t *w, const float *xp, const uint8_t *sb, int K, int N) {
    __m512 acc = _mm512_setzero_ps();
    // output dword i (lane L = i/4, qword q = (i/2)%2, dword-in-qword d = i%2) must read nibble j of the
    // 32: for the "a" op nibbles 0..15 -> (bytes 0-7: low+high), b op nibbles 16..31.
    // qword q in any lane holds bytes (q)*8..+7 i.e. nibbles 16q..16q+15.
    // a: dword i = nibble p(i) with p in 0..15 must come from qword with q = p/16 = 0 -> but dwords in qword 1 see bytes 8-15.
    // so: a-op output dwords in qword0 of each lane take nibbles from bytes 0-7 (2 per qword x 4 lanes = 8 nibbles),
    //     dwords in qword1 take nibbles from bytes 8-15 (8 nibbles); b-op the other 8 + 8.
    uint64_t ca[8], cb[8];
    for (int i = 0; i < 8; i++) {  // qword i: lane i/2, q = i%2
        int L = i / 2;
        // nibbles within the qword: 16 nibbles at bit offsets 0,4,..,60; a takes nibble 2L, 2L+1 ; b takes 8+2L, 9+2L
        uint64_t a0 = 4 * (2 * L), a1 = 4 * (2 * L + 1), b0 = 4 * (8 + 2 * L), b1 = 4 * (9 + 2 * L);
        ca[i] = a0 | (a1 << 32);  // byte 0 and byte 4 of the output qword
        cb[i] = b0 | (b1 << 32);
    }
    const __m512i CA = _mm512_loadu_si512(ca), CB = _mm512_loadu_si512(cb);
    for (int n = 0; n < N; n += R) {
        __m512 a[R], b[R]; for (int r = 0; r < R; r++) a[r] = b[r] = _mm512_setzero_ps();
        for (int k = 0, j = 0; k < K; k += 32, j++) {
            __m512 xa = _mm512_loadu_ps(xp + k), xb = _mm512_loadu_ps(xp + k + 16);
            for (int r = 0; r < R; r++) {
                const uint8_t *row = w + (size_t)(n + r) * K / 2;
                __m512 t = _mm512_load_ps(tab[sb[(n + r) * (K / 32) + j]]);
                __m512i bb = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(row + k / 2)));
                a[r] = _mm512_fmadd_ps(xa, _mm512_permutexvar_ps(_mm512_multishift_epi64_epi8(CA, bb), t), a[r]);
                b[r] = _mm512_fmadd_ps(xb, _mm512_permutexvar_ps(_mm512_multishift_epi64_epi8(CB, bb), t), b[r]);
            }
        }
        for (int r = 0; r < R; r++) acc = _mm512_add_ps(acc, _mm512_add_ps(a[r], b[r]));
    }
    return _mm512_reduce_add_ps(acc);
}
// V8: movzx only, second index from a 2nd movzx of the xmm shifted (xmm op)
TGT float v8(const uint8_t *w, const float *xp, const uint8_t *sb, int K, int N) {
    __m512 acc = _mm512_setzero_ps();
    for (int n = 0; n < N; n += R) {
        __m512 a[R], b[R]; for (int r = 0; r < R; r++) a[r] = b[r] = _mm512_setzero_ps();
        for (int k = 0, j = 0; k < K; k += 32, j++) {
            __m512 xa = _mm512_loadu_ps(xp + k), xb = _mm512_loadu_ps(xp + k + 16);
            for (int r = 0; r < R; r++) {
                const uint8_t *row = w + (size_t)(n + r) * K / 2;
                __m512 t = _mm512_load_ps(tab[sb[(n + r) * (K / 32) + j]]);
                __m128i v = _mm_loadu_si128((const __m128i *)(row + k / 2));
                a[r] = _mm512_fmadd_ps(xa, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(v), t), a[r]);
                b[r] = _mm512_fmadd_ps(xb, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_srli_epi16(v, 4)), t), b[r]);
            }
        }
        for (int r = 0; r < R; r++) acc = _mm512_add_ps(acc, _mm512_add_ps(a[r], b[r]));
    }
    return _mm512_reduce_add_ps(acc);
}
int main(int argc, char **argv) {
    int K = 1024, N = 256;  // 128 KB of FP4: L2
    uint8_t *w = aligned_alloc(64, N * K / 2), *sb = malloc(N * K / 32);
    float *x = aligned_alloc(64, K * 4);
    for (int i = 0; i < N * K / 2; i++) w[i] = rand();
    for (int i = 0; i < N * K / 32; i++) sb[i] = 120 + rand() % 8;
    for (int i = 0; i < K; i++) x[i] = rand() / (float)RAND_MAX;
    for (int v = 0; v < 256; v++) for (int i = 0; i < 16; i++) tab[v][i] = i * 0.5f;
    float (*f[5])(const uint8_t *, const float *, const uint8_t *, int, int) = {v0, v1, v2, v7, v8};
    const char *names[5] = {"FMAs + widening only (floor)", "widen + shift + 2 vpermps (used)", "broadcast + 2 vpsrlvd + 2 vpermps",
                            "broadcast + 2 vpmultishiftqb + 2 vpermps", "xmm shift + 2 widenings + 2 vpermps"};
    for (int rep = 0; rep < 2; rep++)
    for (int i = 0; i < 5; i++) {
        double best = 1e9; float s = 0;
        for (int r = 0; r < 200; r++) { double t0 = now(); s += f[i](w, x, sb, K, N); double t = now() - t0; if (t < best) best = t; }
        printf("%-42s %.3f ns per 32 values, %.1f GB/s of FP4 (checksum %g)\n", names[i], best * 1e9 / (N * K / 32.0), N * K / 2 / best / 1e9, s);
    }
}
