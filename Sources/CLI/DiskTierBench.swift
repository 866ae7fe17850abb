// DiskTierBench.swift: `dsv4 bench disk-tier`, how fast the prefix cache's disk tier brings a
// long prefix back, against a plain sequential read of the same bytes on the same disk.
//
// A prompt's pages and snapshots are written as a shutdown would write them; then, with the
// files dropped from the page cache each round (fsync + POSIX_FADV_DONTNEED), the tier reads
// the prefix back through CacheManager.open (batched io_uring reads, checksums, copies into
// the block store), and a plain loop preads exactly the same byte ranges one after another.
import ArgumentParser
import DeepSeekV4
import Foundation
import Glibc
import ModelRuntime
import PagedCache

struct DiskTierBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk-tier",
        abstract: "Disk-tier read throughput (a long prefix restored from --cache-dir files) vs a plain sequential read of the same bytes.")

    @Option(help: "Model folder (its cache layout is used; no weight is run). Default: the bundled dsv4-tiny.") var model: String?
    @Option(help: "Prefix length in tokens.") var tokens = 32768
    @Option(help: "Directory for the entry files (default: a new one under $TMPDIR, removed after).") var dir: String?
    @Option(help: "Rounds; medians are reported.") var rounds = 5
    @Option(name: .customLong("kv-cache-dtype"), help: kvCacheDTypeHelp)
    var kvCacheDType: KVCacheDType = .f32
    @Flag(name: .customLong("page-cache"), help: "Leave the files in the page cache (measures the tier's CPU cost, not the disk).")
    var pageCache = false
    @Flag(help: "One JSON object on stdout.") var json = false

    func run() throws {
        guard tokens >= 2, rounds >= 1 else { fail("--tokens must be at least 2 and --rounds positive") }
        let m: DeepSeekV4Model
        do { m = try DeepSeekV4Model(directory: model ?? defaultModelDirectory(), kvCacheDType: kvCacheDType) } catch { fail("\(error)") }
        let layout = m.cacheLayout
        let directory = dir ?? NSTemporaryDirectory() + "dsv4-disk-bench-\(getpid())"
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: directory) } }
        let prompt = (0..<tokens).map { ($0 &* 7919) % (m.vocabSize - 2) + 2 }
        let pages = (tokens - 1) / layout.pageTokens
        let budget = (pages + 2) * (layout.pageBytes + layout.stateBytes)
        let t0 = Date()
        let written = try populate(layout: layout, directory: directory, prompt: prompt, budget: budget)
        let writeSeconds = Date().timeIntervalSince(t0)
        var tier: [Double] = [], plain: [Double] = [], readBytes = 0, cached = 0
        for _ in 0..<rounds {
            if !pageCache { dropFromPageCache(directory) }
            let r = try restore(layout: layout, directory: directory, prompt: prompt, budget: budget)
            (readBytes, cached) = (r.bytes, r.cached)
            tier.append(r.seconds)
            if !pageCache { dropFromPageCache(directory) }
            plain.append(plainRead(layout: layout, directory: directory, prompt: prompt, pages: pages))
        }
        let tierS = tier.sorted()[rounds / 2], plainS = plain.sorted()[rounds / 2]
        emit(json, [
            "benchmark": "disk-tier", "page_cache": pageCache, "tokens": tokens, "pages": pages, "cached_tokens": cached, "bytes_read": readBytes,
            "bytes_written": written, "write_seconds": writeSeconds, "tier_read_seconds": tierS, "plain_read_seconds": plainS,
            "tier_gb_per_second": Double(readBytes) / tierS / 1e9, "plain_gb_per_second": Double(readBytes) / plainS / 1e9,
        ], text: String(
            format: "%d-token prefix (%d pages, %d B read, %d B written in %.2f s): restored %d tokens in %.3f s = %.2f GB/s through the tier; plain sequential pread of the same bytes %.3f s = %.2f GB/s (%.2fx)",
            tokens, pages, readBytes, written, writeSeconds, cached, tierS, Double(readBytes) / tierS / 1e9, plainS,
            Double(readBytes) / plainS / 1e9, plainS / tierS))
    }

    /// Computes nothing: fills every page and boundary snapshot with a pattern and writes
    /// them as a shutdown would. Returns the bytes written.
    private func populate(layout: CacheLayout, directory: String, prompt: [Int], budget: Int) throws -> Int {
        let disk = try DiskTier(directory: directory, budgetBytes: 1 << 40, layout: layout, modelIdentity: "bench") { _ in }
        let cache = CacheManager(layout: layout, budgetBytes: budget) { $0.update(repeating: 0, count: layout.stateFloats) }
        cache.attach(disk: disk)
        let (seq, _) = try cache.open(prompt: prompt)
        try cache.reserve(seq, positions: prompt.count)
        let page = UnsafeMutablePointer<Float>.allocate(capacity: layout.pageFloats)
        defer { page.deallocate() }
        let table = cache.view(seq).pages
        let P = layout.pageTokens
        for i in 0..<(prompt.count / P) {
            for j in 0..<layout.pageFloats { page[j] = Float((i &* 31 &+ j) % 1000) }
            cache.store.pages.write(table.slots[i], from: page)
            let snap = cache.allocateSnapshot()
            if let snap { cache.pointer(snap).update(repeating: Float(i), count: layout.stateFloats) }
            cache.commit(seq, tokens: Array(prompt[(i * P)..<((i + 1) * P)]), snapshot: snap)
        }
        cache.close(seq)
        cache.persistToDisk()
        guard disk.isEnabled else { fail("the disk tier turned off while writing to \(directory) (see above)") }
        return disk.stats.writtenBytes
    }

    /// A new cache and tier on the directory (a restarted server) and one open of the prompt.
    private func restore(layout: CacheLayout, directory: String, prompt: [Int], budget: Int) throws -> (seconds: Double, bytes: Int, cached: Int) {
        let disk = try DiskTier(directory: directory, budgetBytes: 1 << 40, layout: layout, modelIdentity: "bench") { _ in }
        let cache = CacheManager(layout: layout, budgetBytes: budget) { $0.update(repeating: 0, count: layout.stateFloats) }
        cache.attach(disk: disk)
        let t0 = Date()
        let (seq, cached) = try cache.open(prompt: prompt)
        let seconds = Date().timeIntervalSince(t0)
        cache.close(seq)
        return (seconds, disk.stats.readBytes, cached)
    }

    /// Preads what the tier reads (each entry's header, tokens and page; the deepest entry's
    /// snapshot), file after file.
    private func plainRead(layout: CacheLayout, directory: String, prompt: [Int], pages: Int) -> Double {
        let P = layout.pageTokens
        let bodyBytes = 128 + 4 * P + layout.pageBytes
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bodyBytes + layout.stateBytes, alignment: 4096)
        defer { buffer.deallocate() }
        var hash: UInt64 = 0
        let fingerprint = cacheFingerprint(layout: layout, modelIdentity: "bench")
        let t0 = Date()
        for i in 0..<pages {
            hash = chainedPageHash(previous: hash, tokens: prompt[(i * P)..<((i + 1) * P)])
            let fd = open(directory + "/" + DiskTier.fileName(hash, fingerprint: fingerprint), O_RDONLY)
            guard fd >= 0 else { fail("cannot open the entry of page \(i) in \(directory)") }
            var n = pread(fd, buffer, bodyBytes, 0)
            if i == pages - 1 { n += pread(fd, buffer + bodyBytes, layout.stateBytes, off_t(bodyBytes)) }
            close(fd)
            guard n > 0 else { fail("cannot read the entry of page \(i)") }
        }
        return Date().timeIntervalSince(t0)
    }

    /// Writes back and drops every entry file from the page cache, so reads come from the disk.
    private func dropFromPageCache(_ directory: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(".kv") {
            let fd = open(directory + "/" + name, O_RDONLY)
            guard fd >= 0 else { continue }
            fsync(fd)
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            close(fd)
        }
    }
}
