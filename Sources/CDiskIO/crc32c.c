// crc32c.c: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of disk
// cache entries. SSE4.2's crc32 instruction where the CPU has it; a byte table otherwise.
#include "cdiskio.h"

#include <nmmintrin.h>
#include <string.h>

static uint32_t table[256];
static int table_ready;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t dio_crc32c_ref(uint32_t crc, const void *data, size_t length) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) build_table();
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < length; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t length) {
    const uint8_t *p = data;
    uint64_t c = ~crc;
    while (length >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (length--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

uint32_t dio_crc32c(uint32_t crc, const void *data, size_t length) {
    if (__builtin_cpu_supports("sse4.2")) return crc32c_sse42(crc, data, length);
    return dio_crc32c_ref(crc, data, length);
}
