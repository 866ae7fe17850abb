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
        let n = m.layout.pageFloats
        m.view(s).pages.region(page: 1, offset: 0, floats: n)[0] = 5
        m.commit(s, tokens: Array(1...6), snapshot: nil)
        let f = try m.fork(s)
        let a = m.view(s), b = m.view(f)
        #expect(a.pages.slots[0] == b.pages.slots[0])  // shared full page
        #expect(a.pages.slots[1] != b.pages.slots[1] && b.pages.region(page: 1, offset: 0, floats: n)[0] == 5)  // private copy of the partial page
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

@Suite struct SnapshotReclaimTests {
    /// Regression: snapshots of pages still in use were pinned until the sequence ended, so a
    /// long sequence held one state-sized snapshot per page and could stall on memory it
    /// could not reclaim. Now the least recently used snapshot goes first; its entry stays in
    /// the chain and a later request resumes from the deepest boundary that kept one.
    @Test func snapshotsOfPagesInUseAreReclaimed() throws {
        // Room for 3 pages and 3 states or snapshots, less one byte.
        let m = manager(budget: 3 * unit - 1)
        let prompt = Array(1...9)
        let (s, _) = try m.open(prompt: prompt)
        try m.reserve(s, positions: 8)
        m.commit(s, tokens: Array(1...4), snapshot: m.allocateSnapshot())
        m.commit(s, tokens: Array(5...8), snapshot: m.allocateSnapshot())
        #expect(m.store.count(.snapshot) == 2 && m.evictableBytes == 2 * layout.stateBytes)
        // A third page needs the older snapshot's memory: it goes, its entry stays.
        try m.reserve(s, positions: 9)
        #expect(m.store.count(.snapshot) == 1 && m.prefix.count == 2 && m.prefix.snapshotCount == 1)
        #expect(m.prefix.allEntries.first { $0.snapshot != nil }?.tokens == [5, 6, 7, 8])
        m.close(s)
        // The deepest boundary kept its snapshot: a new request still resumes at 8, and one
        // that can only reuse the first page (its snapshot gone) starts cold.
        let (t, cached) = try m.open(prompt: prompt + [10])
        #expect(cached == 8)
        m.close(t)
        let (u, cold) = try m.open(prompt: [1, 2, 3, 4, 99])
        #expect(cold == 0)
        m.close(u)
        m.clearPrefixCache()
        #expect(m.store.usedBytes == 0 && m.store.liveBlockCount == 0)
    }

    @Test func aReclaimedSnapshotIsReattachedWhenItsBoundaryIsComputedAgain() throws {
        let store = BlockStore(layout: layout, budgetBytes: 1 << 16)
        let cache = PrefixCache()
        let page = try #require(store.allocate(.page))
        let first = try #require(store.allocate(.snapshot))
        cache.insert(CachedPage(hash: 7, page: page, snapshot: first, tokens: [1, 2, 3, 4]))
        // Page in use: only the snapshot can go.
        guard case .snapshot(let dropped, _) = cache.evictLeastRecentlyUsed(pageIsFree: { _ in false }, snapshotIsFree: { _ in true }) else {
            Issue.record("expected the snapshot to be evicted")
            return
        }
        #expect(dropped == first && cache.count == 1 && cache.entry(7)?.snapshot == nil)
        #expect(cache.evictLeastRecentlyUsed(pageIsFree: { _ in false }, snapshotIsFree: { _ in true }) == nil)
        let second = try #require(store.allocate(.snapshot))
        #expect(cache.attach(snapshot: second, to: 7))
        #expect(cache.entry(7)?.snapshot == second)
        #expect(!cache.attach(snapshot: second, to: 7) && !cache.attach(snapshot: second, to: 8))
        // Page free: the whole entry goes.
        guard case .entry(let e) = cache.evictLeastRecentlyUsed(pageIsFree: { _ in true }, snapshotIsFree: { _ in true }) else {
            Issue.record("expected the entry to be evicted")
            return
        }
        #expect(e.page == page && e.snapshot == second && cache.count == 0)
    }
}
