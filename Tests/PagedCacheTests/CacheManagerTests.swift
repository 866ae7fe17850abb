// CacheManagerTests.swift: block accounting, prefix matching and forking, without a model.
import ModelRuntime
import PagedCache
import Testing

let layout = CacheLayout(pageTokens: 4, pageFloats: 8, stateFloats: 3)
let unit = layout.pageBytes + layout.stateBytes

func manager(budget: Int = 1 << 20) -> CacheManager {
    CacheManager(layout: layout, budgetBytes: budget) { $0.update(repeating: -1, count: layout.stateFloats) }
}

@Suite struct CacheManagerTests {
    @Test func budgetIsEnforcedAndReturned() throws {
        let store = BlockStore(layout: layout, budgetBytes: 2 * layout.pageBytes)
        let a = try #require(store.allocate(.page))
        let b = try #require(store.allocate(.page))
        #expect(store.allocate(.page) == nil)
        store.retain(a)
        store.release(a)
        #expect(store.usedBytes == 2 * layout.pageBytes)
        store.release(a)
        store.release(b)
        #expect(store.usedBytes == 0 && store.liveBlockCount == 0)
    }

    @Test func committedPagesAreFoundAgainAndCollisionsAreChecked() throws {
        let m = manager()
        let prompt = Array(1...10)
        let (s, cached) = try m.open(prompt: prompt)
        #expect(cached == 0)
        #expect(m.view(s).state[0] == -1)  // initialised by the model's function
        try m.reserve(s, positions: 8)
        // The model writes snapshots; here the test does.
        func snapshot(_ value: Float) -> BlockID? {
            m.view(s).state[0] = value
            let b = m.allocateSnapshot()!
            m.pointer(b).update(from: m.view(s).state, count: layout.stateFloats)
            return b
        }
        m.commit(s, tokens: Array(prompt[0..<4]), snapshot: snapshot(42))
        m.commit(s, tokens: Array(prompt[4..<8]), snapshot: snapshot(43))
        #expect(m.prefix.count == 2)
        // Same first 9 tokens: resumes at 8 with the snapshot taken there.
        let (t, c2) = try m.open(prompt: Array(1...9) + [77])
        #expect(c2 == 8)
        #expect(m.view(t).state[0] == 43)
        // Diverging in page 2: only page 1 matches.
        let (u, c3) = try m.open(prompt: [1, 2, 3, 4, 5, 6, 0, 8, 9])
        #expect(c3 == 4)
        #expect(m.view(u).state[0] == 42)
        // A prompt of exactly 8 tokens keeps one token to compute.
        let (v, c4) = try m.open(prompt: Array(1...8))
        #expect(c4 == 4)
        for x in [s, t, u, v] { m.close(x) }
        m.clearPrefixCache()
        #expect(m.store.usedBytes == 0)
    }

    @Test func forkSharesFullPagesAndCopiesThePartialOne() throws {
        let m = manager()
        let (s, _) = try m.open(prompt: Array(1...6))
        try m.reserve(s, positions: 6)
        m.view(s).pages[1][0] = 5
        m.commit(s, tokens: Array(1...6), snapshot: nil)
        let f = try m.fork(s)
        let a = m.view(s), b = m.view(f)
        #expect(a.pages[0] == b.pages[0])  // shared full page
        #expect(a.pages[1] != b.pages[1] && b.pages[1][0] == 5)  // private copy of the partial page
        #expect(a.state != b.state)
        m.close(s)
        m.close(f)
        #expect(m.store.usedBytes == 0)
    }

    @Test func unreferencedCachedPagesAreEvictedLeastRecentlyUsedFirst() throws {
        let m = manager(budget: 3 * unit - 1)
        for base in [0, 100] {
            let prompt = (0..<5).map { base + $0 }
            let (s, _) = try m.open(prompt: prompt)
            try m.reserve(s, positions: 4)
            m.commit(s, tokens: Array(prompt[0..<4]), snapshot: m.allocateSnapshot())
            m.close(s)
        }
        #expect(m.prefix.count == 2)
        // Touch the first; a new sequence needing memory evicts the second.
        let (s1, hit) = try m.open(prompt: [0, 1, 2, 3, 9])
        #expect(hit == 4)
        try m.reserve(s1, positions: 8)
        #expect(m.prefix.count == 1)
        let (_, miss) = try m.open(prompt: [100, 101, 102, 103, 9])
        #expect(miss == 0)
    }
}
