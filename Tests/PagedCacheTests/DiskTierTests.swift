// DiskTierTests.swift: the prefix cache's disk tier: round trips across a "restart" (a new
// cache and tier on the same directory), eviction to disk, damaged and foreign files, the
// lock, an unwritable directory, a full disk, and the pread/pwrite fallback.
//
// The oracle: every page position holds a value derived from the tokens up to it, and every
// snapshot the value of the whole prefix, so a restored page or snapshot that is not exactly
// the prompt's history fails `simulate`.
import Foundation
@testable import PagedCache
import ModelRuntime
import Testing

let diskLayout = CacheLayout(pageTokens: 4, pageFloats: 8, stateFloats: 16, pageRegions: [4, 4])

/// The value a prefix's history is summarised by (exact in fp32).
func prefixValue(_ tokens: ArraySlice<Int>) -> Float {
    Float(tokens.reduce(7) { ($0 &* 31 &+ $1 &+ 3) % 1_000_003 })
}

/// A cache directory under the system's temporary directory, new for each call.
func temporaryDirectory() -> String {
    let d = NSTemporaryDirectory() + "dsv4-disk-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// Collects a tier's log lines.
final class LogLines: @unchecked Sendable {
    var lines: [String] = []
    func add(_ s: String) { lines.append(s) }
    func contains(_ s: String) -> Bool { lines.contains { $0.contains(s) } }
}

func tier(_ dir: String, budget: Int = 1 << 30, identity: String = "test-model", uring: Bool = true, log: LogLines) throws -> DiskTier {
    try DiskTier(directory: dir, budgetBytes: budget, layout: diskLayout, modelIdentity: identity, useIOUring: uring) { log.add($0) }
}

func diskManager(_ disk: DiskTier?, budget: Int = 1 << 20) -> CacheManager {
    let m = CacheManager(layout: diskLayout, budgetBytes: budget) { $0.update(repeating: 0, count: diskLayout.stateFloats) }
    if let disk { m.attach(disk: disk) }
    return m
}

/// Runs `prompt` as a model would: checks what the cache restored, then computes the rest
/// page by page with a snapshot at each boundary. Returns the cached tokens.
@discardableResult
func simulate(_ m: CacheManager, _ prompt: [Int]) throws -> Int {
    let P = diskLayout.pageTokens
    let (seq, cached) = try m.open(prompt: prompt)
    defer { m.close(seq) }
    let view = m.view(seq)
    for p in 0..<cached {
        let token = view.pages.region(page: p / P, offset: 0, floats: P)[p % P]
        let value = view.pages.region(page: p / P, offset: 4, floats: P)[p % P]
        try #require(token == Float(prompt[p]) && value == prefixValue(prompt[0...p]), "restored page differs at position \(p)")
    }
    let expected = cached == 0 ? 0 : prefixValue(prompt[0..<cached])
    try #require((0..<diskLayout.stateFloats).allSatisfy { view.state[$0] == expected + Float($0) } || cached == 0, "restored state differs")
    var pos = cached
    while pos < prompt.count {
        let end = min((pos / P + 1) * P, prompt.count)
        try m.reserve(seq, positions: end)
        let v = m.view(seq)
        for p in pos..<end {
            v.pages.region(page: p / P, offset: 0, floats: P)[p % P] = Float(prompt[p])
            v.pages.region(page: p / P, offset: 4, floats: P)[p % P] = prefixValue(prompt[0...p])
        }
        var snap: BlockID?
        if end % P == 0, let s = m.allocateSnapshot() {
            for i in 0..<diskLayout.stateFloats { m.pointer(s)[i] = prefixValue(prompt[0..<end]) + Float(i) }
            snap = s
        }
        m.commit(seq, tokens: Array(prompt[pos..<end]), snapshot: snap)
        pos = end
    }
    return cached
}

func entryFiles(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".kv") }.sorted()
}

/// Rewrites bytes of a file in place.
func patch(_ path: String, at offset: Int, _ bytes: [UInt8]) throws {
    let h = try #require(FileHandle(forUpdatingAtPath: path))
    try h.seek(toOffset: UInt64(offset))
    h.write(Data(bytes))
    try h.close()
}

/// The entry file of the page ending at token `end` of `prompt`.
func entryFile(_ dir: String, _ prompt: [Int], pages: Int) -> String {
    var h: UInt64 = 0
    for i in 0..<pages { h = chainedPageHash(previous: h, tokens: prompt[(i * 4)..<((i + 1) * 4)]) }
    return dir + "/" + DiskTier.fileName(h, fingerprint: cacheFingerprint(layout: diskLayout, modelIdentity: "test-model"))
}

@Suite struct DiskTierTests {
    let prompt = (0..<42).map { ($0 * 7 + 3) % 50 }

    /// Fills a directory with every page of `prompt` (a first server that shuts down).
    func populate(_ dir: String, uring: Bool = true) throws {
        let log = LogLines()
        let m = diskManager(try tier(dir, uring: uring, log: log))
        try #require(try simulate(m, prompt) == 0)
        m.persistToDisk()
        #expect(m.disk!.stats.entries == 10 && m.disk!.stats.entriesWritten == 10)
    }

    @Test func aRestartedCacheResumesFromDisk() throws {
        let dir = temporaryDirectory()
        try populate(dir)
        let log = LogLines()
        let disk = try tier(dir, log: log)
        #expect(disk.stats.entries == 10 && log.contains("10 entries"))
        let m = diskManager(disk)
        // Same prompt and a new turn: every full page comes back (checked by simulate).
        #expect(try simulate(m, prompt + [9, 8, 7]) == 44 - 4)
        #expect(disk.stats.hitTokens == 40 && disk.stats.entriesRead == 10 && disk.stats.readBytes > 10 * diskLayout.pageBytes)
        // Now in RAM too: the next lookup does not read the disk again.
        #expect(try simulate(m, prompt + [1]) == 40)
        #expect(disk.stats.entriesRead == 10)
    }

    @Test func thePreadFallbackReadsWhatTheRingWrote() throws {
        let dir = temporaryDirectory()
        try populate(dir, uring: true)
        let log = LogLines()
        let m = diskManager(try tier(dir, uring: false, log: log))
        #expect(!m.disk!.stats.usesIOUring)
        #expect(try simulate(m, prompt) == 40)
    }

    @Test func entriesEvictedFromRAMAreReadBack() throws {
        let dir = temporaryDirectory()
        let log = LogLines()
        // Room for a few pages and states only: the second prompt evicts the first's entries.
        let m = diskManager(try tier(dir, log: log), budget: 4 * diskLayout.stateBytes + 14 * diskLayout.pageBytes)
        try simulate(m, prompt)
        let other = (0..<42).map { ($0 * 11 + 5) % 47 + 50 }
        try simulate(m, other)
        #expect(m.disk!.stats.entriesWritten > 0)
        #expect(try simulate(m, prompt) == 40)
        #expect(m.disk!.stats.hitTokens > 0)
    }

    @Test func aFlippedByteEndsTheMatchThereAndTheFileIsRemoved() throws {
        let dir = temporaryDirectory()
        try populate(dir)
        let bad = entryFile(dir, prompt, pages: 6)
        try patch(bad, at: DiskEntryHeader.size + 16 + 5, [0xFF])  // inside page 6's values
        let log = LogLines()
        let m = diskManager(try tier(dir, log: log))
        #expect(try simulate(m, prompt) == 20)  // pages 1-5 from disk, the rest recomputed
        #expect(log.contains("page checksum mismatch") && !FileManager.default.fileExists(atPath: bad))
    }

    @Test func aFlippedSnapshotFallsBackToTheNextDeepest() throws {
        let dir = temporaryDirectory()
        try populate(dir)
        let bad = entryFile(dir, prompt, pages: 10)
        let size = try #require(FileManager.default.attributesOfItem(atPath: bad)[.size] as? Int)
        try patch(bad, at: size - 3, [0x55])
        let log = LogLines()
        let m = diskManager(try tier(dir, log: log))
        #expect(try simulate(m, prompt) == 36)
        #expect(log.contains("snapshot checksum mismatch"))
    }

    @Test func truncatedForeignAndOtherVersionFilesAreSkippedAtStartup() throws {
        let dir = temporaryDirectory()
        try populate(dir)
        // Page 3 truncated, page 5's version changed (header checksum made right again).
        let truncated = entryFile(dir, prompt, pages: 3)
        try #require(truncate(truncated, 100) == 0)
        let versioned = entryFile(dir, prompt, pages: 5)
        var header = [UInt8](try Data(contentsOf: URL(fileURLWithPath: versioned)).prefix(DiskEntryHeader.size))
        header[8] = 9
        let crc = header.withUnsafeBytes { crc32c($0.baseAddress!, 124) }
        for i in 0..<4 { header[124 + i] = UInt8((crc >> (8 * UInt32(i))) & 0xFF) }
        try patch(versioned, at: 0, header)
        try Data("partial".utf8).write(to: URL(fileURLWithPath: dir + "/.x.kv.1.tmp"))
        do {
            let log = LogLines()
            let m = diskManager(try tier(dir, log: log))
            #expect(m.disk!.stats.entries == 8)
            #expect(log.contains("1 damaged, removed") && log.contains("1 of another format version") && log.contains("1 unfinished writes"))
            #expect(try simulate(m, prompt) == 8)
        }
        // Another model on the same directory uses nothing of it.
        let log2 = LogLines()
        let foreign = diskManager(try tier(dir, identity: "other-model", log: log2))
        #expect(foreign.disk!.stats.entries == 0 && log2.contains("of another model"))
        #expect(try simulate(foreign, prompt) == 0)
    }

    @Test func aSecondTierOnTheSameDirectoryIsRefused() throws {
        let dir = temporaryDirectory()
        let log = LogLines()
        let first = try tier(dir, log: log)
        #expect(throws: DiskTierError.self) { _ = try tier(dir, log: log) }
        #expect(throws: DiskTierError.self) { _ = try DiskTier.clear(directory: dir) }
        _ = first
    }

    @Test func anUnwritableDirectoryTurnsTheTierOff() throws {
        let file = temporaryDirectory() + "/plain-file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let log = LogLines()
        let m = diskManager(try tier(file + "/cache", log: log))
        #expect(!m.disk!.isEnabled && log.contains("disk cache off"))
        try simulate(m, prompt)
        m.persistToDisk()
        #expect(try simulate(m, prompt) == 40)  // RAM still serves
    }

    @Test func aFullDiskTurnsTheTierOffAndRAMKeepsServing() throws {
        let dir = temporaryDirectory()
        let log = LogLines()
        let m = diskManager(try tier(dir, log: log))
        m.disk!.io.injectedWriteError = ENOSPC
        try simulate(m, prompt)
        m.persistToDisk()
        #expect(!m.disk!.isEnabled && log.contains("No space left on device"))
        #expect(entryFiles(dir).isEmpty)
        #expect(try simulate(m, prompt + [1]) == 40)
    }

    @Test func theByteBudgetKeepsChainRootsAndTheNewestChains() throws {
        let dir = temporaryDirectory()
        let entryBytes = DiskEntryHeader.size + 16 + diskLayout.pageBytes + diskLayout.stateBytes
        let other = (0..<42).map { ($0 * 11 + 5) % 47 + 50 }
        do {
            let m = diskManager(try tier(dir, budget: 6 * entryBytes, log: LogLines()))
            try simulate(m, prompt)
            m.persistToDisk()  // ten entries, room for six: the first six pages are kept
            #expect(m.disk!.stats.entries == 6 && m.disk!.stats.usedBytes <= 6 * entryBytes)
            #expect(entryFiles(dir).count == 6)
        }
        do {
            let m = diskManager(try tier(dir, budget: 6 * entryBytes, log: LogLines()))
            #expect(try simulate(m, prompt) == 24)
            try simulate(m, other)
            m.persistToDisk()  // a newer chain: the older one goes, deepest first
            #expect(m.disk!.stats.evictedEntries == 6 && m.disk!.stats.entries == 6)
        }
        let m = diskManager(try tier(dir, budget: 6 * entryBytes, log: LogLines()))
        #expect(try simulate(m, other) == 24)
        #expect(try simulate(m, prompt) == 0)
    }

    @Test func inspectAndClearSeeEveryEntry() throws {
        let dir = temporaryDirectory()
        try populate(dir)
        let r = try DiskTier.inspect(directory: dir)
        #expect(r.groups.count == 1 && r.groups[0].entries == 10 && r.groups[0].snapshots == 10 && r.lockHolder == nil)
        let (files, _) = try DiskTier.clear(directory: dir)
        #expect(files == 10 && entryFiles(dir).isEmpty)
    }

    @Test func crc32cMatchesTheStandardVectorAndTheTable() {
        let check = Array("123456789".utf8)
        #expect(check.withUnsafeBytes { crc32c($0.baseAddress!, 9) } == 0xE306_9283)
        var rng = SystemRandomNumberGenerator()
        for n in [0, 1, 7, 8, 9, 63, 1000] {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            bytes.withUnsafeBytes { b in
                let p = b.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
                #expect(crc32c(p, n) == crc32cReference(p, n))
            }
        }
    }
}
