// cdiskio.h: the disk tier's I/O and checksum primitives, the only header Swift sees of this
// target (liburing stays behind it: see shared/notes/swift-build.md, "fd_set" pitfall).
//
// A batch of reads and writes runs to completion in one call: through io_uring (queued up to
// the ring's depth, submitted once per wave, short transfers resubmitted) or, when no ring
// could be set up, with pread/pwrite one after another.
#ifndef CDISKIO_H
#define CDISKIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// One transfer of a batch.
typedef struct dio_op {
    int fd;
    /// 0: read into `buffer`; 1: write from `buffer`.
    int is_write;
    void *buffer;
    uint64_t length;
    uint64_t offset;
    /// Out: bytes transferred (fewer than `length` only at the end of a file), or -errno.
    int64_t result;
} dio_op;

typedef struct dio_ring dio_ring;

/// Sets up an io_uring of `depth` entries. Returns 0 and the ring in *ring, or -errno (the
/// kernel has no io_uring, it is disabled, or memory is locked out).
int dio_ring_open(unsigned depth, dio_ring **ring);
void dio_ring_close(dio_ring *ring);
/// Runs every op of `ops` to completion through the ring. Returns 0 (each op's `result`
/// says how it went) or -errno when the ring itself failed (ops then hold -EIO or partial).
int dio_ring_run(dio_ring *ring, dio_op *ops, size_t count);
/// Runs every op with pread/pwrite (the fallback when no ring could be set up).
void dio_sync_run(dio_op *ops, size_t count);

/// CRC-32C (Castagnoli) of `length` bytes continuing from `crc` (start from 0): SSE4.2's
/// crc32 instruction where the CPU has it, else a table. Bit-identical either way.
uint32_t dio_crc32c(uint32_t crc, const void *data, size_t length);
/// The table version, always compiled (the reference the fast path is tested against).
uint32_t dio_crc32c_ref(uint32_t crc, const void *data, size_t length);

#ifdef __cplusplus
}
#endif
#endif
