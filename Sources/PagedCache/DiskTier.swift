// DiskTier.swift: the prefix cache's second tier, one file per entry in a directory.
//
// Entries (page + its tokens + the snapshot at its end, if any; DiskEntry.swift) are written
// when the prefix cache evicts them from RAM and when the server shuts down, and read back
// when a prompt's chain of page hashes continues on disk past what RAM holds. Files are
// written to a temporary name and renamed, and carry checksums, so a crash or a damaged
// disk never yields an entry that is used. The index lives in memory and is rebuilt by
// scanning the directory's headers at startup (there is no index file to lose). A lock file
// keeps a second server off the directory. Any failure to write (a full disk, a directory
// made unwritable) turns the tier off with one log line; RAM keeps serving.
import Foundation
import Glibc
import ModelRuntime

/// Why a disk tier cannot start.
public enum DiskTierError: Error, Equatable, CustomStringConvertible {
    /// Another process holds the directory's lock.
    case locked(directory: String, holder: String)

    public var description: String {
        switch self {
        case .locked(let d, let holder):
            "cache directory \(d) is in use by another dsv4 process (\(holder)); give each server its own --cache-dir"
        }
    }
}

/// Counters of the disk tier, for /metrics and `dsv4 cache inspect`.
public struct DiskTierStats: Sendable, Equatable {
    public var enabled = false
    public var usesIOUring = false
    public var entries = 0
    public var usedBytes = 0
    public var budgetBytes = 0
    /// Prompt tokens past the RAM hit that disk entries served, and that no tier had.
    public var hitTokens = 0
    public var missTokens = 0
    public var readBytes = 0
    public var writtenBytes = 0
    public var entriesRead = 0
    public var entriesWritten = 0
    /// Entries found damaged (checksum, size) and removed, and entries evicted to fit.
    public var corruptEntries = 0
    public var evictedEntries = 0
    /// Seconds spent in reads and writes (bytes / seconds = throughput).
    public var readSeconds = 0.0
    public var writeSeconds = 0.0
}

/// What the index knows of one entry file.
struct DiskEntryInfo {
    var header: DiskEntryHeader
    var lastUse: Int
    var hits = 0
}

/// The disk tier of one cache directory; driven by the engine thread only.
public final class DiskTier: @unchecked Sendable {
    public let directory: String
    public let budgetBytes: Int
    public let layout: CacheLayout
    public let fingerprint: UInt64
    let log: (String) -> Void
    let io: DiskIO
    private var lockFD: Int32 = -1
    public private(set) var isEnabled = true
    var index: [UInt64: DiskEntryInfo] = [:]
    var usedBytes = 0
    var clock = 0
    var pending: [DiskEntryImage] = []
    var pendingBytes = 0
    /// Entries a read in progress needs (eviction leaves them alone).
    var pinned: Set<UInt64> = []
    /// Set while `writeTogether` runs.
    var group: Int?
    var counters = DiskTierStats()

    /// Opens (creating) `directory`, takes its lock and indexes the entries of this model.
    /// A directory that cannot be created or written turns the tier off (logged), it does not
    /// throw: the server serves from RAM.
    /// - Parameters:
    ///   - modelIdentity: what identifies the model's weights and cache dtype (the CLI's
    ///     config bytes, checkpoint sizes and dtype); with the layout, it makes the fingerprint.
    ///   - useIOUring: false forces pread/pwrite (tests of the fallback).
    /// - Throws: `DiskTierError.locked` when another process holds the directory.
    public init(
        directory: String, budgetBytes: Int, layout: CacheLayout, modelIdentity: String, useIOUring: Bool = true,
        log: @escaping (String) -> Void
    ) throws(DiskTierError) {
        self.directory = directory
        self.budgetBytes = budgetBytes
        self.layout = layout
        self.log = log
        fingerprint = cacheFingerprint(layout: layout, modelIdentity: modelIdentity)
        io = DiskIO(useIOUring: useIOUring, log: log)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            disable("cannot create \(directory): \(error.localizedDescription)")
            return
        }
        guard try lock() else { return }
        guard probeWritable() else { return }
        scan()
    }

    deinit {
        for e in pending { e.free() }
        if lockFD >= 0 { close(lockFD) }
    }

    func path(_ name: String) -> String { directory + "/" + name }
    /// The file of entry `hash` of the model with `fingerprint`: models sharing a directory
    /// never overwrite each other's entries (the same prompt has the same chained hash).
    public static func fileName(_ hash: UInt64, fingerprint: UInt64) -> String { hexHash(fingerprint) + "-" + hexHash(hash) + ".kv" }
    func fileName(_ hash: UInt64) -> String { Self.fileName(hash, fingerprint: fingerprint) }
    static func hexHash(_ h: UInt64) -> String {
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// The tier's counters now.
    public var stats: DiskTierStats {
        var s = counters
        s.enabled = isEnabled
        s.usesIOUring = io.usesIOUring
        s.entries = index.count
        s.usedBytes = usedBytes
        s.budgetBytes = budgetBytes
        return s
    }

    /// Turns the tier off for the rest of the run (one log line); pending writes are dropped.
    func disable(_ reason: String) {
        guard isEnabled else { return }
        isEnabled = false
        for e in pending { e.free() }
        pending.removeAll()
        pendingBytes = 0
        index.removeAll()
        usedBytes = 0
        log("disk cache off: \(reason); serving from RAM only")
    }

    /// Takes the directory's lock file (kept open for the process's life). False: the tier
    /// is off (logged). Throws when another process holds it.
    private func lock() throws(DiskTierError) -> Bool {
        let file = path("lock")
        let fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            disable("cannot open \(file): \(String(cString: strerror(errno)))")
            return false
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            var buf = [UInt8](repeating: 0, count: 64)
            let n = pread(fd, &buf, 63, 0)
            close(fd)
            if e == EWOULDBLOCK {
                let pid = String(decoding: buf[0..<max(n, 0)], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                throw .locked(directory: directory, holder: pid.isEmpty ? "unknown pid" : "pid \(pid)")
            }
            disable("cannot lock \(file): \(String(cString: strerror(e)))")
            return false
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        lockFD = fd
        return true
    }

    /// Creates and removes a file: false (tier off, logged) when the directory refuses.
    private func probeWritable() -> Bool {
        let probe = path(".probe.\(getpid()).tmp")
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            disable("cannot write in \(directory): \(String(cString: strerror(errno)))")
            return false
        }
        close(fd)
        unlink(probe)
        return true
    }
}
