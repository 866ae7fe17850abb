// ProcessMemory.swift: this process's resident memory and the machine's available memory,
// read from /proc (Linux). nil where /proc is absent.
import Checkpoint
import Foundation

enum ProcessMemory {
    /// Fields of /proc/self/status in bytes: VmRSS, RssAnon, RssFile, VmHWM.
    static func status() -> [String: Int]? { kilobyteFields("/proc/self/status", ["VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"]) }

    /// MemAvailable and MemTotal of /proc/meminfo, in bytes.
    static func machine() -> [String: Int]? { kilobyteFields("/proc/meminfo", ["MemAvailable", "MemTotal"]) }

    /// Why a `--kv-cache-memory` budget cannot be served here (not positive, or more than the
    /// machine's memory: the page pool reserves the budget's address space up front), or nil.
    static func cacheBudgetProblem(_ bytes: Int) -> String? {
        if bytes <= 0 { return "--kv-cache-memory must be positive" }
        if let total = machine()?["MemTotal"], bytes > total {
            return "--kv-cache-memory \(bytes) exceeds this machine's memory (" + String(format: "%.1f GB)", Double(total) / 1e9)
        }
        return nil
    }

    /// Resident bytes of this process's mappings of `paths` (from /proc/self/smaps): how much of
    /// the checkpoint is actually paged in, as opposed to code and libraries.
    static func residentBytes(ofMappedFiles paths: [String]) -> Int? {
        guard let text = readProcFile("/proc/self/smaps") else { return nil }
        let wanted = Set(paths.map { URL(fileURLWithPath: $0).standardizedFileURL.resolvingSymlinksInPath().path })
        var inWanted = false
        var total = 0
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = fields.first, first.contains("-"), first.allSatisfy({ $0.isHexDigit || $0 == "-" }) {
                // A mapping header: address perms offset dev inode [path]
                inWanted = fields.count >= 6 && wanted.contains(fields[5...].joined(separator: " "))
            } else if inWanted, fields.count >= 2, fields[0] == "Rss:", let kb = Int(fields[1]) {
                total += kb * 1024
            }
        }
        return total
    }

    /// The whole of a /proc file (String(contentsOfFile:) stops after the first read: /proc files report size 0).
    private static func readProcFile(_ path: String) -> String? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        guard let data = try? h.readToEnd() else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    private static func kilobyteFields(_ path: String, _ keys: [String]) -> [String: Int]? {
        guard let text = readProcFile(path) else { return nil }
        var out: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " || $0 == "\t" })
            guard parts.count >= 2, keys.contains(String(parts[0])), let kb = Int(parts[1]) else { continue }
            out[String(parts[0])] = kb * 1024
        }
        return out.isEmpty ? nil : out
    }
}

/// Human-readable bytes: 1.23 GiB, 45.6 MiB, 789 B.
func formatBytes(_ b: Double) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = b
    var i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(Int(v)) B" : String(format: "%.2f %@", v, units[i])
}

/// Progress display for opening a checkpoint: one stderr line per shard once it is mapped and
/// its header verified. Shown when asked (`--progress`), when stderr is a terminal, or when the
/// checkpoint is large (≥ 1 GiB), so tests and pipes stay quiet otherwise.
struct LoadProgressPrinter {
    static let largeCheckpointBytes = 1 << 30

    static func callback(always: Bool = false) -> (LoadProgress) -> Void {
        let show = always || isatty(2) != 0
        return { p in
            guard show || p.bytesTotal >= largeCheckpointBytes else { return }
            let pct = p.bytesTotal > 0 ? 100 * Double(p.bytesDone) / Double(p.bytesTotal) : 100
            let line = String(
                format: "shard %d/%d %@: mapped %@, verified %d tensors (dtypes, shapes, byte ranges, index); %@ of %@ (%.0f%%)\n",
                p.shard, p.shardCount, (p.path as NSString).lastPathComponent, formatBytes(Double(p.shardBytes)), p.tensorCount,
                formatBytes(Double(p.bytesDone)), formatBytes(Double(p.bytesTotal)), pct)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}
