// CacheManager+Accounting.swift: what a request can cost the cache (its exact footprint,
// checked at admission) and what the cache holds now, per block kind and per cache kind.
import ModelRuntime

/// The most cache a request holds over an uninterrupted cold run.
///
/// A choice computes at most `prompt + maxTokens - 1` positions (its last token is sampled,
/// never fed back). Choice 0 owns every page of its sequence; choices forked from it after the
/// prompt share the prompt's full pages and own the rest. Every sequence holds one state.
/// Every page boundary a sequence reaches takes one snapshot when memory allows; snapshots
/// are reclaimable at any time (PrefixCache NOTE), so they are counted apart: `bytes` must
/// fit the budget, `peakBytes` is what the run holds when nothing is reclaimed. A prompt that
/// ends inside a page also takes a snapshot there, and (while its output goes on) a copy of
/// that partial page: a tail, as reclaimable as the snapshots.
public struct CacheFootprint: Sendable, Equatable, CustomStringConvertible {
    public let pages: Int
    public let states: Int
    public let snapshots: Int
    /// Copies of partial pages held by tails (reclaimable).
    public let tailPages: Int
    public let pageBytes: Int
    public let stateBytes: Int

    /// Pages and states: what the request needs to run at all.
    public var bytes: Int { pages * pageBytes + states * stateBytes }
    /// Snapshots and tail pages, reclaimable.
    public var snapshotBytes: Int { snapshots * stateBytes + tailPages * pageBytes }
    public var peakBytes: Int { bytes + snapshotBytes }

    public var description: String {
        "\(pages) history pages of \(pageBytes) B and \(states) sequence states of \(stateBytes) B, plus up to \(snapshots) reclaimable snapshots and \(tailPages) tail pages"
    }
}

/// Bytes of one cache kind: held now, the most it could hold, and what prefix hits served.
public struct CacheKindUsage: Sendable, Equatable {
    public let kind: CacheKind
    /// Bytes of this kind in live blocks (pages, states and snapshots).
    public let usedBytes: Int
    /// The most bytes of this kind the budget can hold: the budget filled with the blocks
    /// that carry it (the budget is shared, so the kinds' capacities overlap).
    public let capacityBytes: Int
    /// Bytes of this kind that prompts could have reused from the prefix cache (page kinds:
    /// the reusable full pages of each looked-up prompt; state kinds: one snapshot per lookup
    /// that had a reusable page).
    public let prefixQueriedBytes: Int
    /// Of those, bytes served from the prefix cache instead of computed.
    public let prefixHitBytes: Int
}

/// A point-in-time account of the cache.
public struct CacheUsage: Sendable, Equatable {
    public let budgetBytes: Int
    public let usedBytes: Int
    /// Live blocks and their bytes by block kind.
    public let blocks: [BlockKind: Int]
    public let bytesByBlockKind: [BlockKind: Int]
    /// Every cache kind the layout carries.
    public let kinds: [CacheKindUsage]

    public func kind(_ k: CacheKind) -> CacheKindUsage? { kinds.first { $0.kind == k } }
}

extension CacheManager {
    /// The footprint of a request of `promptTokens` prompt tokens generating up to
    /// `maxTokens` tokens for each of `n` choices.
    public func footprint(promptTokens: Int, maxTokens: Int, n: Int) -> CacheFootprint {
        let pT = layout.pageTokens
        let positions = max(promptTokens + maxTokens - 1, promptTokens)
        let sharedPages = promptTokens / pT
        let pagesPerSequence = layout.pageCount(forPositions: positions)
        let boundaries = positions / pT
        let extra = max(n - 1, 0)
        let promptTail = promptTokens % pT == 0 ? 0 : 1
        return CacheFootprint(
            pages: pagesPerSequence + extra * (pagesPerSequence - sharedPages), states: max(n, 1),
            snapshots: boundaries + extra * (boundaries - sharedPages) + promptTail, tailPages: maxTokens > 1 ? promptTail : 0,
            pageBytes: layout.pageBytes, stateBytes: layout.stateBytes)
    }

    /// Every kind of the layout (in `CacheKind.allCases` order), with block counts.
    public var usage: CacheUsage {
        let carried = CacheKind.allCases.filter { layout.pageBytes(of: $0) > 0 || layout.stateBytes(of: $0) > 0 }
        let budget = store.budgetBytes
        let kinds = carried.map { k in
            let inPage = layout.pageBytes(of: k), inState = layout.stateBytes(of: k)
            let capacity = max(
                inPage > 0 ? budget / layout.pageBytes * inPage : 0, inState > 0 ? budget / layout.stateBytes * inState : 0)
            let stats = prefixStats[k] ?? (0, 0)
            return CacheKindUsage(
                kind: k, usedBytes: store.usedBytes(of: k), capacityBytes: capacity, prefixQueriedBytes: stats.queried,
                prefixHitBytes: stats.hit)
        }
        var blocks: [BlockKind: Int] = [:]
        var bytes: [BlockKind: Int] = [:]
        for b in BlockKind.allCases {
            blocks[b] = store.count(b)
            bytes[b] = store.usedBytes(of: b)
        }
        return CacheUsage(budgetBytes: budget, usedBytes: store.usedBytes, blocks: blocks, bytesByBlockKind: bytes, kinds: kinds)
    }

    /// Adds one prefix lookup to the per-kind statistics: `reusable` full pages could have
    /// been served, `hit` were.
    func recordKindLookup(reusablePages: Int, hitPages: Int) {
        for k in CacheKind.allCases {
            let inPage = layout.pageBytes(of: k), inState = layout.stateBytes(of: k)
            guard inPage > 0 || inState > 0 else { continue }
            var s = prefixStats[k] ?? (0, 0)
            s.queried += reusablePages * inPage + (reusablePages > 0 ? inState : 0)
            s.hit += hitPages * inPage + (hitPages > 0 ? inState : 0)
            prefixStats[k] = s
        }
    }
}
