// PrefixCache.swift: content-addressed full pages for exact prefix reuse.
//
// A full page is keyed by a chained hash of every token id from position 0 to its end, and
// stores the page's own tokens (so a hash collision can never return wrong history) plus an
// exact snapshot of the sequence state at its end boundary. A request resumes from the
// deepest boundary whose chain of pages is cached and that still has its snapshot.
//
// NOTE: snapshots are reclaimable on their own. A state is much larger than a page for V4
// (MBs of rings and compressor tails vs a page's compressed entries), so pinning
// one per page of every running sequence would cost more than the history itself. A
// snapshot whose page is still in use is dropped under memory pressure; its entry stays as a
// link of the chain, and requests resume from a shallower boundary.
//
// Tails: a snapshot can also sit inside a page (the end of a prompt, the end of an output),
// where the next turn of a conversation resumes. A tail entry holds a private copy of that
// partial page, its tokens (fewer than a page) and the state there; it is keyed by the hash
// chained from its parent page's hash over its own tokens, so it never matches a full page.
// A resumed sequence copies the tail's page (it goes on writing into it). Tails are evicted
// whole, by the same least-recently-used order as the rest.
import ModelRuntime

/// One cached page and the state snapshot at its end.
public struct CachedPage: Sendable {
    public let hash: UInt64
    public let page: BlockID
    /// The state after the page; nil once reclaimed.
    public internal(set) var snapshot: BlockID?
    /// The page's own token ids (`pageTokens` of them).
    public let tokens: [Int]
    /// The page's index in its chain (0: a prompt's first page).
    public let depth: Int
    /// A tail: a partial page (`tokens` holds fewer than a page) whose snapshot sits inside it.
    public let isTail: Bool

    public init(hash: UInt64, page: BlockID, snapshot: BlockID?, tokens: [Int], depth: Int = 0, isTail: Bool = false) {
        self.hash = hash
        self.page = page
        self.snapshot = snapshot
        self.tokens = tokens
        self.depth = depth
        self.isTail = isTail
    }
}

/// FNV-1a over 64-bit words, chained from the previous page's hash.
public func chainedPageHash(previous: UInt64, tokens: ArraySlice<Int>) -> UInt64 {
    var h = previous ^ 0xCBF2_9CE4_8422_2325
    for t in tokens {
        var v = UInt64(bitPattern: Int64(t))
        for _ in 0..<8 {
            h ^= v & 0xFF
            h = h &* 0x0000_0100_0000_01B3
            v >>= 8
        }
    }
    return h
}

/// The index of cached pages, with least-recently-used order for eviction.
public final class PrefixCache {
    private var entries: [UInt64: CachedPage] = [:] { didSet { version += 1 } }
    /// Changes whenever an entry is added, removed or changed.
    public private(set) var version = 0
    private var lastUse: [UInt64: Int] = [:]
    private var clock = 0
    public private(set) var lookups = 0
    public private(set) var hitTokens = 0
    public private(set) var queriedTokens = 0

    public init() {}

    public var count: Int { entries.count }
    public var allEntries: [CachedPage] { Array(entries.values) }

    public func entry(_ hash: UInt64) -> CachedPage? { entries[hash] }

    /// Entries still holding a snapshot.
    public var snapshotCount: Int { entries.values.filter { $0.snapshot != nil }.count }

    /// The cached pages matching the longest run of full pages of `tokens` from position 0,
    /// at most `maxPages` of them.
    public func match(_ tokens: [Int], pageTokens: Int, maxPages: Int) -> [CachedPage] {
        var out: [CachedPage] = []
        var h: UInt64 = 0
        var start = 0
        while out.count < maxPages, start + pageTokens <= tokens.count {
            let slice = tokens[start..<(start + pageTokens)]
            h = chainedPageHash(previous: h, tokens: slice)
            guard let e = entries[h], e.tokens.elementsEqual(slice) else { break }
            out.append(e)
            start += pageTokens
        }
        return out
    }

    /// The longest tail under `parent` (the chained hash of the `depth` pages before it; 0 at
    /// depth 0) whose tokens are `tokens[start...]`'s first 1...`maxTokens` (less than a page),
    /// and that still has its snapshot.
    public func matchTail(_ tokens: [Int], parent: UInt64, depth: Int, start: Int, maxTokens: Int) -> CachedPage? {
        let n = min(maxTokens, tokens.count - start)
        guard n > 0 else { return nil }
        let prefixHashes = Self.tailHashes(tokens, parent: parent, start: start, count: n)
        for length in stride(from: n, through: 1, by: -1) {
            guard let e = entries[prefixHashes[length - 1]], e.isTail, e.depth == depth, e.snapshot != nil,
                e.tokens.elementsEqual(tokens[start..<(start + length)])
            else { continue }
            return e
        }
        return nil
    }

    /// The keys of the tails of every length 1...`count` under `parent` over `tokens[start...]`
    /// (element i: length i + 1). The chained hash is a running fold: one pass gives them all.
    public static func tailHashes(_ tokens: [Int], parent: UInt64, start: Int, count: Int) -> [UInt64] {
        var out: [UInt64] = []
        out.reserveCapacity(count)
        var h = parent ^ 0xCBF2_9CE4_8422_2325
        for t in tokens[start..<(start + count)] {
            var v = UInt64(bitPattern: Int64(t))
            for _ in 0..<8 {
                h ^= v & 0xFF
                h = h &* 0x0000_0100_0000_01B3
                v >>= 8
            }
            out.append(h)
        }
        return out
    }

    /// Entries that are tails.
    public private(set) var tailCount = 0

    /// Records a lookup's outcome for hit-rate metrics.
    public func recordLookup(queried: Int, hit: Int) {
        lookups += 1
        queriedTokens += queried
        hitTokens += hit
    }

    /// When an entry was last used (higher: more recent).
    public func lastUse(_ hash: UInt64) -> Int { lastUse[hash, default: 0] }

    public func touch(_ hash: UInt64) {
        clock += 1
        lastUse[hash] = clock
    }

    /// Adds `page` (the caller hands its references to the cache); false if already present.
    @discardableResult
    public func insert(_ page: CachedPage) -> Bool {
        guard entries[page.hash] == nil else { return false }
        entries[page.hash] = page
        if page.isTail { tailCount += 1 }
        touch(page.hash)
        return true
    }

    /// Gives an entry whose snapshot was reclaimed a new one (the same exact state: the same
    /// tokens led there); false if the entry is absent or has a snapshot.
    public func attach(snapshot: BlockID, to hash: UInt64) -> Bool {
        guard let e = entries[hash], e.snapshot == nil else { return false }
        entries[hash]!.snapshot = snapshot
        touch(hash)
        return true
    }

    /// What eviction takes from an entry.
    public enum Eviction: Sendable {
        /// The whole entry (page and snapshot): no sequence uses the page.
        case entry(CachedPage)
        /// Only the snapshot: the page stays in use and in the chain (`entry` as it was).
        case snapshot(BlockID, entry: CachedPage)
    }

    /// Evicts from the least recently used entry that allows it: the whole entry when
    /// `pageIsFree`, else its snapshot when `snapshotIsFree`.
    public func evictLeastRecentlyUsed(pageIsFree: (CachedPage) -> Bool, snapshotIsFree: (BlockID) -> Bool) -> Eviction? {
        var best: (entry: CachedPage, whole: Bool, use: Int)?
        for e in entries.values {
            let whole = pageIsFree(e)
            guard whole || e.snapshot.map(snapshotIsFree) == true else { continue }
            let use = lastUse[e.hash, default: 0]
            if best == nil || use < best!.use { best = (e, whole, use) }
        }
        guard let victim = best else { return nil }
        if victim.whole {
            entries[victim.entry.hash] = nil
            lastUse[victim.entry.hash] = nil
            if victim.entry.isTail { tailCount -= 1 }
            return .entry(victim.entry)
        }
        entries[victim.entry.hash]!.snapshot = nil
        return .snapshot(victim.entry.snapshot!, entry: victim.entry)
    }

    /// Removes every entry (returns them so their blocks can be released).
    public func removeAll() -> [CachedPage] {
        let all = Array(entries.values)
        entries.removeAll()
        lastUse.removeAll()
        tailCount = 0
        return all
    }
}
