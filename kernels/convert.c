// convert.c: scalar decoders of the stored number formats.
#include <string.h>
#include "internal.h"

float ck_bf16_to_f32(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ck_f32_to_bf16(float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x40);  // keep NaN quiet
    uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest even
    return (uint16_t)((bits + rounding) >> 16);
}

float ck_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            int e = -1;
            do { man <<= 1; e++; } while ((man & 0x400u) == 0);
            man &= 0x3FFu;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void ck_to_f32(const void *src, ck_dtype dtype, size_t n, float *dst) {
    switch (dtype) {
    case CK_DTYPE_F32: memcpy(dst, src, n * 4); break;
    case CK_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)src;
        for (size_t i = 0; i < n; i++) dst[i] = ck_bf16_to_f32(s[i]);
        break;
    }
    case CK_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)src;
        for (size_t i = 0; i < n; i++) dst[i] = ck_f16_to_f32(s[i]);
        break;
    }
    case CK_DTYPE_F8E4M3: {
        const uint8_t *s = (const uint8_t *)src;
        for (size_t i = 0; i < n; i++) dst[i] = ck_e4m3_to_f32(s[i]);
        break;
    }
    case CK_DTYPE_FP4E2M1: {
        const uint8_t *s = (const uint8_t *)src;
        for (size_t i = 0; i < n; i++) dst[i] = ck_e2m1_to_f32((i & 1) ? (uint8_t)(s[i / 2] >> 4) : s[i / 2]);
        break;
    }
    }
}
