// internal.h: helpers shared by the kernel files (not visible to Swift).
#ifndef CK_INTERNAL_H
#define CK_INTERNAL_H
#include "include/ckernels.h"
int ck_use_avx512(void);
/// 1 when the AVX2+FMA paths should run (no AVX-512, not forced to the scalar twins).
int ck_use_avx2(void);

// BF16 weights (matmul_bf16.c): x permuted once per product, then any tiling.
size_t ck_bf16_padded(size_t K);
void ck_bf16_permute_x(const float *x, size_t ldx, size_t T, size_t K, float *out);
void ck_bf16_matmul_permuted(const float *xp, size_t T, size_t K, const void *w, size_t N, float *y, size_t ldy);
void ck_bf16_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, size_t N, float *y, size_t ldy);
// F32/BF16/F16 products on AVX2+FMA machines (matmul_avx2.c).
void ck_avx2_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
                    float *y, size_t ldy);
/// x as the AVX2 products read it ([T][ck_avx2_padded(K)]), once per product.
size_t ck_avx2_padded(size_t K);
void ck_avx2_prepare_x(const float *x, size_t ldx, size_t T, size_t K, ck_dtype dtype, float *out);
void ck_avx2_matmul_prepared(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N, float *y,
                             size_t ldy);
// FP8/FP4 in the BF16 kernel's lane order (quant_lanes.c).
int ck_qlanes_applies(ck_dtype dtype, size_t K, const ck_scales *s);
void ck_qlanes_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                      const ck_scales *s, size_t N, float *y, size_t ldy);
/// x in the order lane-ordered products of `dtype` read it (out: [T, K]).
void ck_qlanes_permute_x(ck_dtype dtype, const float *x, size_t ldx, size_t T, size_t K, float *out);
/// As ck_qlanes_matmul with x already permuted (ck_bf16_permute_x; K is a multiple of 32).
void ck_qlanes_matmul_permuted(const float *xp, size_t T, size_t K, const void *w, ck_dtype dtype,
                               const ck_scales *s, size_t N, float *y, size_t ldy);
#endif
