// ProcessMemory.swift: this process's resident memory and the machine's available memory,
// read from /proc (Linux). nil where /proc is absent.
import Checkpoint
import Foundation

enum ProcessMemory {
    /// Fields of /proc/self/status in bytes: VmRSS, RssAnon, RssFile, VmHWM.
    static func status() -> [String: Int]? { kilobyteFields("/proc/self/status", ["VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"]) }

    /// MemAvailable and MemTotal of /proc/meminfo, in bytes.
    static func machine() -> [String: Int]? { kilobyteFields("/proc/meminfo", ["MemAvailable", "MemTotal"]) }

    private static func kilobyteFields(_ path: String, _ keys: [String]) -> [String: Int]? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
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

/// Progress display for opening a checkpoint: one stderr line per shard, only when stderr is a
/// terminal or the checkpoint is large (≥ 1 GiB), so tests and pipes stay quiet.
struct LoadProgressPrinter {
    static let largeCheckpointBytes = 1 << 30

    static func callback() -> (LoadProgress) -> Void {
        let tty = isatty(2) != 0
        return { p in
            guard tty || p.bytesTotal >= largeCheckpointBytes else { return }
            let pct = p.bytesTotal > 0 ? 100 * Double(p.bytesDone) / Double(p.bytesTotal) : 100
            let line = String(
                format: "mapped %d/%d %@ (%@), %@ of %@ (%.0f%%)\n", p.shard, p.shardCount,
                (p.path as NSString).lastPathComponent, formatBytes(Double(p.shardBytes)),
                formatBytes(Double(p.bytesDone)), formatBytes(Double(p.bytesTotal)), pct)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}
