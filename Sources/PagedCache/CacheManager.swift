// CacheManager.swift: every sequence's block table and state, prefix reuse, copy-on-fork,
// and eviction of unreferenced cached pages. The single mutation point of the cache.
//
// Full pages are immutable: history is append-only and a page is full only when its last
// position is computed, so sharing needs no copy-on-write of full pages; the one partial
// page of a sequence is private and is copied when a sequence forks (n > 1).
import ModelRuntime

/// Identifies a sequence in the cache.
public struct SequenceID: Hashable, Sendable, CustomStringConvertible {
    public let raw: Int
    public var description: String { "seq\(raw)" }
}

/// Errors of cache operations.
public enum CacheError: Error, Equatable, CustomStringConvertible {
    /// The budget cannot hold what was asked even after evicting every unreferenced page.
    case outOfMemory(neededBytes: Int, budgetBytes: Int)

    public var description: String {
        switch self {
        case .outOfMemory(let n, let b): "KV cache out of memory: needs \(n) more bytes of a \(b)-byte budget"
        }
    }
}

public final class CacheManager {
    public let layout: CacheLayout
    public let store: BlockStore
    public let prefix = PrefixCache()
    /// The tier below RAM, if any (attach with `attach(disk:)`).
    public internal(set) var disk: DiskTier?
    private let initializeState: (UnsafeMutablePointer<Float>) -> Void

    struct Sequence {
        var state: BlockID
        var pages: [BlockID] = []
        /// Pool slot of each page.
        var slots: [Int] = []
        /// Tokens whose history is in the cache, in order (position = tokens.count).
        var tokens: [Int] = []
        /// Chained hashes of the leading full pages (index i covers pages 0...i).
        var pageHashes: [UInt64] = []
    }

    private var sequences: [Int: Sequence] = [:]
    /// Set when a read from the disk tier stopped because no block could be allocated.
    var diskReadShortOfMemory = false
    private var nextID = 0
    /// Per cache kind: bytes prompts could have reused, and bytes they did.
    var prefixStats: [CacheKind: (queried: Int, hit: Int)] = [:]

    /// - Parameters:
    ///   - initializeState: writes an empty sequence's state (the model's).
    public init(layout: CacheLayout, budgetBytes: Int, initializeState: @escaping (UnsafeMutablePointer<Float>) -> Void) {
        self.layout = layout
        store = BlockStore(layout: layout, budgetBytes: budgetBytes)
        self.initializeState = initializeState
    }

    public var sequenceCount: Int { sequences.count }

    /// Bytes held by blocks that only the prefix cache references (reclaimable): pages no
    /// sequence uses, and every snapshot not being copied from.
    /// Computed again only after the store or the prefix cache changed: a decode step that
    /// allocates nothing does not walk a million-token history's entries.
    public var evictableBytes: Int {
        let version = (store.version, prefix.version)
        if let c = evictableCache, c.version == version { return c.bytes }
        let bytes = prefix.allEntries.reduce(0) { sum, e in
            let snapshot = e.snapshot.map { store.references($0) == 1 ? layout.stateBytes : 0 } ?? 0
            return sum + snapshot + (store.references(e.page) == 1 ? layout.pageBytes : 0)
        }
        evictableCache = (version, bytes)
        return bytes
    }
    private var evictableCache: (version: (Int, Int), bytes: Int)?

    /// Allocates, evicting from least-recently-used cached entries when needed: whole entries
    /// whose page no sequence uses, or the snapshots of entries whose page is in use.
    func allocate(_ kind: BlockKind) -> BlockID? {
        if let id = store.allocate(kind) { return id }
        while let victim = prefix.evictLeastRecentlyUsed(
            pageIsFree: { store.references($0.page) == 1 && $0.snapshot.map { store.references($0) == 1 } != false },
            snapshotIsFree: { store.references($0) == 1 })
        {
            switch victim {
            case .entry(let e):
                stageOnDisk(e)
                store.release(e.page)
                if let s = e.snapshot { store.release(s) }
            case .snapshot(let s, let e):
                stageOnDisk(e)
                store.release(s)
            }
            if let id = store.allocate(kind) { return id }
        }
        return nil
    }

    // MARK: - Sequences

    /// Opens a sequence for `prompt`, resuming from the deepest cached point that leaves at
    /// least one prompt token to compute: a page boundary that still has its snapshot, or a
    /// tail (a snapshot inside a page, PrefixCache NOTE) past it. Returns the sequence and the
    /// number of prompt tokens served from the cache.
    /// - Parameter waitForSwapIn: throw `outOfMemory` (the caller retries later) rather than
    ///   resume shallower when memory is too short to read the prefix back from disk: a
    ///   preempted sequence swapped out waits for room instead of recomputing.
    public func open(prompt: [Int], waitForSwapIn: Bool = false) throws -> (SequenceID, cachedTokens: Int) {
        diskReadShortOfMemory = false
        let P = layout.pageTokens
        let maxPages = max(prompt.count - 1, 0) / P
        var hits = prefix.match(prompt, pageTokens: P, maxPages: maxPages)
        // Hold the hits before allocating (reading from disk does), so eviction cannot take them.
        for h in hits { store.retain(h.page) }
        if disk != nil {
            hits = extendFromDisk(prompt, ramHits: hits, maxPages: maxPages)
            loadTailFromDisk(prompt, hits: hits)
            if waitForSwapIn && diskReadShortOfMemory {
                for h in hits { store.release(h.page) }
                throw CacheError.outOfMemory(neededBytes: layout.pageBytes, budgetBytes: store.budgetBytes)
            }
        }
        let tail = deepestTail(prompt, hits: hits)
        if let tail {
            while hits.count > tail.depth { store.release(hits.removeLast().page) }
        } else {
            while let last = hits.last, last.snapshot == nil {
                store.release(last.page)
                hits.removeLast()
            }
        }
        let cached = hits.count * P + (tail?.tokens.count ?? 0)
        prefix.recordLookup(queried: prompt.count, hit: cached)
        recordKindLookup(reusablePages: maxPages, hitPages: hits.count)
        for h in hits { prefix.touch(h.hash) }
        if let tail { prefix.touch(tail.hash) }
        let resume = tail?.snapshot ?? hits.last?.snapshot
        // Held while allocating: eviction takes neither the snapshot nor the tail's page.
        let held = [resume, tail?.page].compactMap { $0 }
        for b in held { store.retain(b) }
        defer { for b in held { store.release(b) } }
        func fail(_ bytes: Int) -> CacheError {
            for h in hits { store.release(h.page) }
            return CacheError.outOfMemory(neededBytes: bytes, budgetBytes: store.budgetBytes)
        }
        guard let state = allocate(.state) else { throw fail(layout.stateBytes) }
        var seq = Sequence(state: state)
        if let resume {
            store.copy(resume, to: state)
            seq.pages = hits.map(\.page)
            seq.slots = hits.map { store.slot($0.page) }
            seq.pageHashes = hits.map(\.hash)
            seq.tokens = Array(prompt[0..<cached])
            if let tail {
                // The sequence writes on into its partial page: a private copy of the tail's.
                guard let page = allocate(.page) else {
                    store.release(state)
                    throw fail(layout.pageBytes)
                }
                store.copy(tail.page, to: page)
                seq.pages.append(page)
                seq.slots.append(store.slot(page))
            }
        } else {
            initializeState(store.pointer(state))
        }
        let id = SequenceID(raw: nextID)
        nextID += 1
        sequences[id.raw] = seq
        return (id, seq.tokens.count)
    }

    /// Positions computed so far.
    public func position(_ id: SequenceID) -> Int { sequences[id.raw]!.tokens.count }
    public func tokens(_ id: SequenceID) -> [Int] { sequences[id.raw]!.tokens }

    /// Makes the block table cover `positions` positions (allocating and evicting as needed).
    public func reserve(_ id: SequenceID, positions: Int) throws {
        var seq = sequences[id.raw]!
        defer { sequences[id.raw] = seq }
        while seq.pages.count < layout.pageCount(forPositions: positions) {
            guard let p = allocate(.page) else {
                throw CacheError.outOfMemory(neededBytes: layout.pageBytes, budgetBytes: store.budgetBytes)
            }
            store.zero(page: p)
            seq.pages.append(p)
            seq.slots.append(store.slot(p))
        }
    }

    /// A fresh state block for a snapshot, or nil when memory is short (the boundary is then
    /// simply not cached).
    public func allocateSnapshot() -> BlockID? { allocate(.snapshot) }

    /// What the model needs for a step of this sequence.
    public func view(_ id: SequenceID) -> (state: UnsafeMutablePointer<Float>, pages: PageTable) {
        let s = sequences[id.raw]!
        return (store.pointer(s.state), store.pages.table(s.slots))
    }

    public func pointer(_ block: BlockID) -> UnsafeMutablePointer<Float> { store.pointer(block) }

    /// Records that `tokens` were computed; `snapshot` (if any) holds the state after them and
    /// is registered with the page that ends there (or released when that page is known).
    public func commit(_ id: SequenceID, tokens new: [Int], snapshot: BlockID?) {
        var seq = sequences[id.raw]!
        seq.tokens += new
        let fullPages = seq.tokens.count / layout.pageTokens
        // Hash every newly full page (needed for the chain even without a snapshot).
        while seq.pageHashes.count < fullPages {
            let i = seq.pageHashes.count
            let prev = i == 0 ? 0 : seq.pageHashes[i - 1]
            seq.pageHashes.append(chainedPageHash(previous: prev, tokens: seq.tokens[(i * layout.pageTokens)..<((i + 1) * layout.pageTokens)]))
        }
        if let snap = snapshot {
            let atBoundary = seq.tokens.count % layout.pageTokens == 0 && fullPages > 0
            let hash = atBoundary ? seq.pageHashes[fullPages - 1] : 0
            if atBoundary, prefix.entry(hash) == nil {
                let i = fullPages - 1
                store.retain(seq.pages[i])
                prefix.insert(CachedPage(
                    hash: hash, page: seq.pages[i], snapshot: snap,
                    tokens: Array(seq.tokens[(i * layout.pageTokens)..<((i + 1) * layout.pageTokens)]), depth: i))
            } else if !atBoundary {
                addTail(seq, snapshot: snap)
            } else if !prefix.attach(snapshot: snap, to: hash) {
                // A known boundary with its snapshot.
                store.release(snap)
            }
        }
        sequences[id.raw] = seq
    }

    /// A copy of `id` that shares its full pages and owns copies of its state and partial page.
    public func fork(_ id: SequenceID) throws -> SequenceID {
        let src = sequences[id.raw]!
        guard let state = allocate(.state) else {
            throw CacheError.outOfMemory(neededBytes: layout.stateBytes, budgetBytes: store.budgetBytes)
        }
        store.copy(src.state, to: state)
        var seq = Sequence(state: state, pages: [], slots: [], tokens: src.tokens, pageHashes: src.pageHashes)
        let full = src.tokens.count / layout.pageTokens
        for (i, p) in src.pages.enumerated() {
            if i < full {
                store.retain(p)
                seq.pages.append(p)
                seq.slots.append(store.slot(p))
            } else {
                guard let copy = allocate(.page) else {
                    for q in seq.pages { store.release(q) }
                    store.release(state)
                    throw CacheError.outOfMemory(neededBytes: layout.pageBytes, budgetBytes: store.budgetBytes)
                }
                store.copy(p, to: copy)
                seq.pages.append(copy)
                seq.slots.append(store.slot(copy))
            }
        }
        let nid = SequenceID(raw: nextID)
        nextID += 1
        sequences[nid.raw] = seq
        return nid
    }

    /// Releases everything the sequence holds (cached pages stay in the prefix cache). With
    /// `keepingEnd`, where the sequence stopped stays in the prefix cache too: its full pages
    /// as links of the chain, and its state (no copy) as a tail or as the snapshot of the
    /// boundary it stopped on, so a request that goes on from there (a conversation's next
    /// turn, a preempted sequence resuming) resumes instead of recomputing. All of it is
    /// evictable (to the disk tier, when there is one).
    public func close(_ id: SequenceID, keepingEnd: Bool = false) {
        guard var seq = sequences.removeValue(forKey: id.raw) else { return }
        let stateKept = keepingEnd && !seq.tokens.isEmpty && keepEnd(&seq)
        if !stateKept { store.release(seq.state) }
        for p in seq.pages { store.release(p) }
    }

    /// Drops every cached page no sequence uses (returns the cache to empty when idle).
    public func clearPrefixCache() {
        for e in prefix.removeAll() {
            store.release(e.page)
            if let s = e.snapshot { store.release(s) }
        }
    }
}
