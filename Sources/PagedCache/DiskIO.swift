// DiskIO.swift: runs batches of file reads and writes for the disk tier, through io_uring
// when the kernel gives us a ring, else with pread/pwrite (said once in the log).
import CDiskIO
import Glibc

/// One transfer of a batch: `length` bytes at `offset` of `fd`, into or from `buffer`.
struct DiskTransfer {
    var fd: Int32
    var isWrite: Bool
    var buffer: UnsafeMutableRawPointer
    var length: Int
    var offset: Int
    /// After the batch: bytes transferred, or -errno.
    var result = 0
}

/// Owns the ring (if any); not thread-safe (the engine thread drives it).
final class DiskIO {
    private var ring: OpaquePointer?
    /// Whether batches go through io_uring (false: pread/pwrite).
    var usesIOUring: Bool { ring != nil }
    /// Testing aid: every write of a batch fails with this errno (e.g. ENOSPC).
    var injectedWriteError: Int32?

    /// - Parameters:
    ///   - depth: transfers in flight at most.
    ///   - log: told once when no ring could be set up.
    init(depth: UInt32 = 64, useIOUring: Bool = true, log: (String) -> Void) {
        guard useIOUring else { return }
        var r: OpaquePointer?
        let rc = dio_ring_open(depth, &r)
        if rc == 0 {
            ring = r
        } else {
            log("disk cache: io_uring unavailable (\(String(cString: strerror(-rc)))): using pread/pwrite")
        }
    }

    deinit { dio_ring_close(ring) }

    /// Runs every transfer to completion (one submission per wave of `depth`); each
    /// transfer's `result` says how it went.
    func run(_ transfers: inout [DiskTransfer]) {
        guard !transfers.isEmpty else { return }
        var ops = transfers.map {
            dio_op(fd: $0.fd, is_write: $0.isWrite ? 1 : 0, buffer: $0.buffer, length: UInt64($0.length), offset: UInt64($0.offset), result: 0)
        }
        if let injectedWriteError, transfers.contains(where: \.isWrite) {
            for i in ops.indices { ops[i].result = ops[i].is_write == 1 ? -Int64(injectedWriteError) : 0 }
            let reads = ops.indices.filter { ops[$0].is_write == 0 }
            var readOps = reads.map { ops[$0] }
            execute(&readOps)
            for (k, i) in reads.enumerated() { ops[i] = readOps[k] }
        } else {
            execute(&ops)
        }
        for i in transfers.indices { transfers[i].result = Int(ops[i].result) }
    }

    private func execute(_ ops: inout [dio_op]) {
        ops.withUnsafeMutableBufferPointer { b in
            if let ring, dio_ring_run(ring, b.baseAddress, b.count) == 0 { return }
            // No ring, or the ring itself failed: the same batch, synchronously.
            dio_sync_run(b.baseAddress, b.count)
        }
    }
}

/// CRC-32C of `count` bytes at `p`, continuing from `crc`.
func crc32c(_ p: UnsafeRawPointer, _ count: Int, from crc: UInt32 = 0) -> UInt32 { dio_crc32c(crc, p, count) }

/// The table-driven CRC-32C (the reference `crc32c` is tested against).
func crc32cReference(_ p: UnsafeRawPointer, _ count: Int, from crc: UInt32 = 0) -> UInt32 { dio_crc32c_ref(crc, p, count) }
