// dispatch.c: CPU feature detection and the process-wide choice of implementation.
#include "ckernels.h"

static uint32_t detect(void) {
    uint32_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= CK_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= CK_CPU_FMA;
    if (__builtin_cpu_supports("avx512f")) f |= CK_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= CK_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512vl")) f |= CK_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512bf16")) f |= CK_CPU_AVX512BF16;
    if (__builtin_cpu_supports("avx512fp16")) f |= CK_CPU_AVX512FP16;
    if (__builtin_cpu_supports("avx512vnni")) f |= CK_CPU_AVX512VNNI;
#endif
    return f;
}

uint32_t ck_cpu_features(void) {
    static uint32_t cached = 0xFFFFFFFFu;
    if (cached == 0xFFFFFFFFu) cached = detect();
    return cached;
}

static int has_avx512(void) {
    uint32_t need = CK_CPU_AVX512F | CK_CPU_AVX512BW | CK_CPU_AVX512VL;
    return (ck_cpu_features() & need) == need;
}

// Per thread, so a test forcing the scalar twins cannot change the arithmetic of other
// threads (pool workers and concurrently running tests keep the automatic choice).
static _Thread_local int forced = CK_IMPL_AUTO;

ck_impl ck_force_impl(ck_impl impl) {
    forced = impl;
    return impl;
}

/// 1 when the AVX-512 paths should run.
int ck_use_avx512(void) {
    int f = forced;
    if (f == CK_IMPL_SCALAR || f == CK_IMPL_AVX2) return 0;
    return has_avx512();
}

int ck_use_avx2(void) {
    uint32_t need = CK_CPU_AVX2 | CK_CPU_FMA;
    return forced != CK_IMPL_SCALAR && (forced == CK_IMPL_AVX2 || !has_avx512()) && (ck_cpu_features() & need) == need;
}

const char *ck_impl_name(void) { return ck_use_avx512() ? "avx512" : (ck_use_avx2() ? "avx2" : "scalar"); }
