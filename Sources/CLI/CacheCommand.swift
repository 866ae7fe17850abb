// CacheCommand.swift: `dsv4 cache inspect|clear --cache-dir DIR`, and the model identity
// that keys a disk cache (ServeCommand).
import ArgumentParser
import DeepSeekV4
import Foundation
import PagedCache

struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache", abstract: "See or empty a prefix-cache directory (dsv4 serve --cache-dir).",
        subcommands: [CacheInspectCommand.self, CacheClearCommand.self])
}

struct CacheInspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Entries, snapshots and bytes per model in a cache directory.")
    @Option(name: .customLong("cache-dir"), help: "The cache directory.") var cacheDir: String

    func run() throws {
        let r: DiskDirectoryReport
        do { r = try DiskTier.inspect(directory: cacheDir) } catch { fail("cannot read \(cacheDir): \(error.localizedDescription)") }
        print("cache directory \(cacheDir)\(r.lockHolder.map { " (in use by pid \($0))" } ?? "")")
        if r.groups.isEmpty { print("  no entries") }
        for g in r.groups {
            let hex = String(g.fingerprint, radix: 16)
            print("  model \(hex): \(g.entries) entries (\(g.snapshots) with a snapshot, \(g.tails) prompt or output ends), \(g.bytes) bytes, \((g.entries - g.tails) * g.pageTokens) tokens of full pages")
        }
        if r.temporary > 0 { print("  \(r.temporary) unfinished writes (removed when a server starts)") }
        for u in r.unusable { print("  unusable: \(u)") }
    }
}

struct CacheClearCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clear", abstract: "Delete every entry of a cache directory.")
    @Option(name: .customLong("cache-dir"), help: "The cache directory.") var cacheDir: String

    func run() throws {
        do {
            let (files, bytes) = try DiskTier.clear(directory: cacheDir)
            print("removed \(files) files (\(bytes) bytes) from \(cacheDir)")
        } catch {
            fail("\(error)")
        }
    }
}

/// What identifies a model's cache contents beyond its layout: the config's bytes, the
/// checkpoint files' names and sizes, and the cache dtype (cheap: no weight is read).
func modelIdentity(directory: String, dtype: KVCacheDType) -> String {
    let fm = FileManager.default
    let config = (try? Data(contentsOf: URL(fileURLWithPath: directory + "/config.json"))) ?? Data()
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in config {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01B3
    }
    let files = ((try? fm.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
    let sizes = files.map { f in "\(f):\((try? fm.attributesOfItem(atPath: directory + "/" + f)[.size] as? Int) ?? -1)" }
    return "config=\(String(h, radix: 16));checkpoint=\(sizes.joined(separator: ","));dtype=\(dtype.rawValue)"
}
