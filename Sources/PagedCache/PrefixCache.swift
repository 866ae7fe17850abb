// PrefixCache.swift: content-addressed full pages for exact prefix reuse.
//
// A full page is keyed by a chained hash of every token id from position 0 to its end, and
// stores the page's own tokens (so a hash collision can never return wrong history) plus an
// exact snapshot of the sequence state at its end boundary. A request resumes from the
// deepest boundary whose chain of pages is cached.
import ModelRuntime

/// One cached page and the state snapshot at its end.
public struct CachedPage: Sendable {
    public let hash: UInt64
    public let page: BlockID
    public let snapshot: BlockID
    /// The page's own token ids (`pageTokens` of them).
    public let tokens: [Int]
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
    private var entries: [UInt64: CachedPage] = [:]
    private var lastUse: [UInt64: Int] = [:]
    private var clock = 0
    public private(set) var lookups = 0
    public private(set) var hitTokens = 0
    public private(set) var queriedTokens = 0

    public init() {}

    public var count: Int { entries.count }
    public var allEntries: [CachedPage] { Array(entries.values) }

    public func entry(_ hash: UInt64) -> CachedPage? { entries[hash] }

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

    /// Records a lookup's outcome for hit-rate metrics.
    public func recordLookup(queried: Int, hit: Int) {
        lookups += 1
        queriedTokens += queried
        hitTokens += hit
    }

    public func touch(_ hash: UInt64) {
        clock += 1
        lastUse[hash] = clock
    }

    /// Adds `page` (the caller hands its references to the cache); false if already present.
    @discardableResult
    public func insert(_ page: CachedPage) -> Bool {
        guard entries[page.hash] == nil else { return false }
        entries[page.hash] = page
        touch(page.hash)
        return true
    }

    /// Removes and returns the least recently used entry accepted by `evictable`.
    public func evictLeastRecentlyUsed(where evictable: (CachedPage) -> Bool) -> CachedPage? {
        let candidates = entries.values.filter(evictable)
        guard let victim = candidates.min(by: { lastUse[$0.hash, default: 0] < lastUse[$1.hash, default: 0] }) else { return nil }
        entries[victim.hash] = nil
        lastUse[victim.hash] = nil
        return victim
    }

    /// Removes every entry (returns them so their blocks can be released).
    public func removeAll() -> [CachedPage] {
        let all = Array(entries.values)
        entries.removeAll()
        lastUse.removeAll()
        return all
    }
}
