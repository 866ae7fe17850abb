// DiskTier+Admin.swift: what `dsv4 cache inspect|clear` do with a cache directory (no model
// needed: entries are grouped by the fingerprint in their headers).
import Foundation
import Glibc

/// A cache directory's contents, by model fingerprint.
public struct DiskDirectoryReport: Sendable, Equatable {
    public struct Group: Sendable, Equatable {
        public var fingerprint: UInt64
        public var entries = 0
        public var snapshots = 0
        public var bytes = 0
        public var pageTokens = 0
        /// Entries that are tails (a snapshot inside a page: fewer tokens than a page).
        public var tails = 0
    }
    /// Entry groups, most bytes first.
    public var groups: [Group] = []
    /// Files that are not usable entries (damaged, truncated, another format version).
    public var unusable: [String] = []
    /// Unfinished writes (temporary files).
    public var temporary = 0
    /// The pid in the lock file when a process holds the lock, else nil.
    public var lockHolder: String?
}

extension DiskTier {
    /// Reads every entry header of `directory` (no checksum of payloads: see the server's log
    /// for damage found on reads).
    public static func inspect(directory: String) throws -> DiskDirectoryReport {
        var report = DiskDirectoryReport()
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        var groups: [UInt64: DiskDirectoryReport.Group] = [:]
        var header = [UInt8](repeating: 0, count: DiskEntryHeader.size)
        for name in names {
            if name.hasSuffix(".tmp") { report.temporary += 1 }
            guard name.hasSuffix(".kv") else { continue }
            let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                report.unusable.append("\(name): \(String(cString: strerror(errno)))")
                continue
            }
            var st = stat()
            fstat(fd, &st)
            let n = pread(fd, &header, header.count, 0)
            close(fd)
            switch header.withUnsafeBytes({ DiskEntryHeader.parse($0.baseAddress!, count: max(n, 0)) }) {
            case .failure(let p): report.unusable.append("\(name): \(p)")
            case .success(let h) where h.fileBytes != Int(st.st_size):
                report.unusable.append("\(name): truncated (\(st.st_size) of \(h.fileBytes) bytes)")
            case .success(let h):
                var g = groups[h.fingerprint] ?? .init(fingerprint: h.fingerprint, pageTokens: h.pageTokens)
                g.entries += 1
                g.snapshots += h.snapshotBytes > 0 ? 1 : 0
                g.tails += h.tokenCount < h.pageTokens ? 1 : 0
                g.bytes += h.fileBytes
                groups[h.fingerprint] = g
            }
        }
        report.groups = groups.values.sorted { ($0.bytes, $0.fingerprint) > ($1.bytes, $1.fingerprint) }
        report.lockHolder = lockHolder(directory)
        return report
    }

    /// The pid written in the lock file when another process holds the lock.
    static func lockHolder(_ directory: String) -> String? {
        let fd = open(directory + "/lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard flock(fd, LOCK_SH | LOCK_NB) != 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = pread(fd, &buf, 63, 0)
        return String(decoding: buf[0..<max(n, 0)], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Deletes every entry and temporary file of `directory` (other files stay).
    /// - Returns: files removed and their bytes.
    /// - Throws: `DiskTierError.locked` while a server uses the directory.
    public static func clear(directory: String) throws -> (files: Int, bytes: Int) {
        // Hold the lock while deleting, so no server starts on a half-cleared directory.
        let lockFD = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        defer { if lockFD >= 0 { close(lockFD) } }
        if lockFD >= 0, flock(lockFD, LOCK_EX | LOCK_NB) != 0 {
            throw DiskTierError.locked(directory: directory, holder: "pid \(lockHolder(directory) ?? "unknown")")
        }
        var files = 0, bytes = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix(".kv") || name.hasSuffix(".tmp") {
            var st = stat()
            guard stat(directory + "/" + name, &st) == 0, unlink(directory + "/" + name) == 0 else { continue }
            files += 1
            bytes += Int(st.st_size)
        }
        return (files, bytes)
    }
}
