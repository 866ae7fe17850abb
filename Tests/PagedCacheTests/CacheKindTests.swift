// CacheKindTests.swift: per-kind accounting of the cache: every byte attributed to a kind,
// block counts that match what sequences and the prefix cache really hold, every kind back
// to empty after random interleavings, and per-kind prefix hit statistics.
import ModelRuntime
import PagedCache
import Testing

/// Pages: 3 CSA-entry values, 2 indexer-key values, 1 HCA value, 2 unattributed; states:
/// 2 ring values and 1 compressor-tail value.
let kindLayout = CacheLayout(
    pageTokens: 4, pageFloats: 8, stateFloats: 3, pageKinds: [.csaEntries: 3, .indexerKeys: 2, .hcaEntries: 1],
    stateKinds: [.windowRings: 2, .compressorTails: 1])

@Suite struct CacheKindTests {
    func kinds(_ m: CacheManager) -> [CacheKind: CacheKindUsage] {
        Dictionary(uniqueKeysWithValues: m.usage.kinds.map { ($0.kind, $0) })
    }

    @Test func layoutAttributesEveryValue() {
        #expect(kindLayout.pageFloatsByKind == [.csaEntries: 3, .indexerKeys: 2, .hcaEntries: 1, .other: 2])
        #expect(kindLayout.stateFloatsByKind == [.windowRings: 2, .compressorTails: 1])
        let plain = CacheLayout(pageTokens: 4, pageFloats: 8, stateFloats: 3)
        #expect(plain.pageFloatsByKind == [.other: 8] && plain.stateFloatsByKind == [.other: 3])
    }

    @Test func capacityIsTheBudgetFilledWithTheBlocksCarryingTheKind() {
        let m = CacheManager(layout: kindLayout, budgetBytes: 1000) { $0.update(repeating: 0, count: 3) }
        let k = kinds(m)
        #expect(k[.csaEntries]!.capacityBytes == 1000 / 32 * 12)
        #expect(k[.windowRings]!.capacityBytes == 1000 / 12 * 8)
        #expect(k.values.allSatisfy { $0.usedBytes == 0 })
    }

    /// Random opens, reservations, commits (with and without snapshots), forks and closes:
    /// after every operation the block counts equal what the sequences and the prefix cache
    /// reference, the kinds add up to the used bytes, and at the end every kind is empty.
    @Test(arguments: [1, 2, 3, 4, 5])
    func everyKindReturnsToEmptyAfterRandomInterleavings(seed: Int) throws {
        var rng = SplitMix(seed: UInt64(seed))
        let budget = 60 * 32
        let m = CacheManager(layout: kindLayout, budgetBytes: budget) { $0.update(repeating: 0, count: 3) }
        var open: [(SequenceID, [Int])] = []
        for _ in 0..<400 {
            switch rng.next() % 6 {
            case 0, 1:
                // A common first page, then a tail from a small alphabet, so prefixes repeat.
                let prompt = [0, 1, 2, 0] + (0..<(Int(rng.next() % 10) + 1)).map { _ in Int(rng.next() % 3) }
                if let (s, _) = try? m.open(prompt: prompt) { open.append((s, prompt)) }
            case 2, 3:
                guard !open.isEmpty else { continue }
                let i = Int(rng.next() % UInt64(open.count))
                let (s, prompt) = open[i]
                let pos = m.position(s)
                let n = min(Int(rng.next() % 6) + 1, max(prompt.count - pos, 0) + 3)
                guard (try? m.reserve(s, positions: pos + n)) != nil else { continue }
                var toks: [Int] = []
                for j in pos..<(pos + n) { toks.append(j < prompt.count ? prompt[j] : Int(rng.next() % 3)) }
                // Commit page by page, with a snapshot at each boundary (as the engine does).
                var p = pos
                while p < pos + n {
                    let boundary = (p / 4 + 1) * 4
                    let end = min(pos + n, boundary)
                    m.commit(s, tokens: Array(toks[(p - pos)..<(end - pos)]), snapshot: end == boundary ? m.allocateSnapshot() : nil)
                    p = end
                }
            case 4:
                guard !open.isEmpty else { continue }
                let (s, prompt) = open[Int(rng.next() % UInt64(open.count))]
                if let f = try? m.fork(s) { open.append((f, prompt)) }
            default:
                guard !open.isEmpty else { continue }
                let (s, _) = open.remove(at: Int(rng.next() % UInt64(open.count)))
                m.close(s)
            }
            try check(m, open: open.map(\.0))
        }
        for (s, _) in open { m.close(s) }
        try check(m, open: [])
        #expect(m.store.count(.snapshot) == m.prefix.snapshotCount && m.store.count(.state) == 0)
        m.clearPrefixCache()
        #expect(m.store.usedBytes == 0 && m.store.liveBlockCount == 0)
        for (k, u) in kinds(m) { #expect(u.usedBytes == 0, "\(k)") }
        #expect(kinds(m)[.csaEntries]!.prefixHitBytes > 0, "the random prompts were meant to share prefixes")
    }

    func check(_ m: CacheManager, open: [SequenceID]) throws {
        // Distinct pages referenced by sequences or by the prefix cache.
        var pages = Set<Int>()
        for s in open { pages.formUnion(m.view(s).pages.slots) }
        for e in m.prefix.allEntries { pages.insert(m.store.slot(e.page)) }
        #expect(m.store.count(.page) == pages.count)
        #expect(m.store.count(.state) == open.count)
        let snapshots = m.prefix.snapshotCount
        #expect(m.store.count(.snapshot) == snapshots)
        let u = m.usage
        #expect(u.kinds.map(\.usedBytes).reduce(0, +) == u.usedBytes)
        #expect(u.usedBytes == pages.count * 32 + (open.count + snapshots) * 12)
        #expect(u.usedBytes <= u.budgetBytes)
        #expect(u.kind(.hcaEntries)!.usedBytes == pages.count * 4)
        #expect(u.kind(.compressorTails)!.usedBytes == (open.count + snapshots) * 4)
    }

    @Test func prefixHitsAreCountedPerKind() throws {
        let m = CacheManager(layout: kindLayout, budgetBytes: 1 << 16) { $0.update(repeating: 0, count: 3) }
        let prompt = Array(1...9)
        let (a, _) = try m.open(prompt: prompt)
        try m.reserve(a, positions: 8)
        m.commit(a, tokens: Array(1...4), snapshot: m.allocateSnapshot())
        m.commit(a, tokens: Array(5...8), snapshot: m.allocateSnapshot())
        // Second lookup: 2 reusable pages, both hit, and one snapshot resumed.
        let (b, cached) = try m.open(prompt: prompt)
        #expect(cached == 8)
        let k = kinds(m)
        #expect(k[.csaEntries]!.prefixQueriedBytes == 4 * 12 && k[.csaEntries]!.prefixHitBytes == 2 * 12)
        #expect(k[.indexerKeys]!.prefixHitBytes == 2 * 8)
        #expect(k[.windowRings]!.prefixQueriedBytes == 2 * 8 && k[.windowRings]!.prefixHitBytes == 8)
        m.close(a)
        m.close(b)
        m.clearPrefixCache()
        #expect(m.store.usedBytes == 0)
    }
}

/// A tiny seeded generator for reproducible random interleavings.
struct SplitMix {
    var x: UInt64
    init(seed: UInt64) { x = seed }
    mutating func next() -> UInt64 {
        x &+= 0x9E37_79B9_7F4A_7C15
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
