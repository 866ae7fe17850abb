// CacheManager+Tails.swift: snapshots inside a page (PrefixCache NOTE on tails): where a
// prompt resumes from one, how a prompt's end and a closing sequence's end become one, and
// how a closing (finished or preempted) sequence leaves its pages and state to the cache.
import ModelRuntime

extension CacheManager {
    /// The deepest tail `prompt` can resume from that lies past the deepest page boundary with
    /// a snapshot among `hits` (the matched full pages), leaving a prompt token to compute.
    func deepestTail(_ prompt: [Int], hits: [CachedPage]) -> CachedPage? {
        guard prefix.tailCount > 0 else { return nil }
        let P = layout.pageTokens
        let snapshotDepth = (hits.lastIndex { $0.snapshot != nil } ?? -1) + 1
        for depth in stride(from: hits.count, through: snapshotDepth, by: -1) {
            let start = depth * P
            guard start < prompt.count - 1 else { continue }
            let parent = depth == 0 ? 0 : hits[depth - 1].hash
            if let t = prefix.matchTail(prompt, parent: parent, depth: depth, start: start, maxTokens: min(P - 1, prompt.count - 1 - start)) {
                return t
            }
        }
        return nil
    }

    /// Caches `snapshot` (the state of `seq` now, inside a page) as a tail with a copy of the
    /// partial page; `snapshot` is released when the tail is known or memory is short.
    func addTail(_ seq: Sequence, snapshot: BlockID, pageOwned: BlockID? = nil) {
        let P = layout.pageTokens
        let depth = seq.tokens.count / P
        let partial = Array(seq.tokens[(depth * P)...])
        let hash = chainedPageHash(previous: depth == 0 ? 0 : seq.pageHashes[depth - 1], tokens: partial[...])
        if let e = prefix.entry(hash) {
            // Known (or a collision with another entry: leave it).
            if e.isTail, e.snapshot == nil, prefix.attach(snapshot: snapshot, to: hash) { return }
            store.release(snapshot)
            if let pageOwned { store.release(pageOwned) }
            return
        }
        let page: BlockID
        if let pageOwned {
            page = pageOwned
        } else {
            guard let copy = allocate(.page) else {
                store.release(snapshot)
                return
            }
            store.copy(seq.pages[depth], to: copy)
            page = copy
        }
        prefix.insert(CachedPage(hash: hash, page: page, snapshot: snapshot, tokens: partial, depth: depth, isTail: true))
    }

    /// Registers `seq`'s full pages and its end state in the prefix cache; returns whether the
    /// state block was taken over (else the caller releases it).
    func keepEnd(_ seq: inout Sequence) -> Bool {
        let P = layout.pageTokens
        let depth = seq.tokens.count / P
        // Pages whose boundary got no snapshot (memory was short) were never registered.
        // Deepest first, so the chain's root is the most recently used: eviction (to the
        // disk tier) takes the chain from its end, and what stays in RAM is a prefix of it.
        for i in (0..<min(depth, seq.pages.count)).reversed() {
            if prefix.entry(seq.pageHashes[i]) == nil {
                store.retain(seq.pages[i])
                prefix.insert(CachedPage(
                    hash: seq.pageHashes[i], page: seq.pages[i], snapshot: nil, tokens: Array(seq.tokens[(i * P)..<((i + 1) * P)]), depth: i))
            } else {
                prefix.touch(seq.pageHashes[i])
            }
        }
        let atBoundary = seq.tokens.count % P == 0
        if atBoundary {
            guard let e = prefix.entry(seq.pageHashes[depth - 1]), e.snapshot == nil else { return false }
            store.convert(seq.state, to: .snapshot)
            if !prefix.attach(snapshot: seq.state, to: e.hash) { store.release(seq.state) }
            return true
        }
        let hash = chainedPageHash(previous: depth == 0 ? 0 : seq.pageHashes[depth - 1], tokens: seq.tokens[(depth * P)...])
        if prefix.entry(hash)?.snapshot != nil { return false }
        store.convert(seq.state, to: .snapshot)
        // The partial page is private to the sequence: the tail takes it over, no copy.
        guard depth < seq.pages.count, store.references(seq.pages[depth]) == 1 else {
            addTail(seq, snapshot: seq.state)
            return true
        }
        let page = seq.pages.remove(at: depth)
        seq.slots.remove(at: depth)
        addTail(seq, snapshot: seq.state, pageOwned: page)
        return true
    }
}
