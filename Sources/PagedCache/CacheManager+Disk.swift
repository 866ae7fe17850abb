// CacheManager+Disk.swift: the prefix cache over a disk tier. Entries leaving RAM are staged
// for the disk (eviction, shutdown); a prompt whose chain of page hashes continues on disk
// past the RAM hit reads those pages, and the deepest snapshot, back into new blocks.
import ModelRuntime

extension CacheManager {
    /// Puts `tier` under the prefix cache (its layout must be this cache's).
    public func attach(disk tier: DiskTier) {
        precondition(tier.layout == layout, "disk tier layout differs from the cache's")
        disk = tier
    }

    /// Stages an entry leaving RAM (page and, if it still has one, snapshot) for the disk.
    func stageOnDisk(_ e: CachedPage) {
        guard let disk, disk.isEnabled else { return }
        let slot = store.slot(e.page)
        disk.stage(
            hash: e.hash, depth: e.depth, tokens: e.tokens, fillPage: { store.pages.read(slot, into: $0) },
            snapshot: e.snapshot.map { UnsafePointer(store.pointer($0)) })
    }

    /// Writes every RAM entry the disk does not hold yet (at shutdown, so the prefix cache
    /// survives a restart), chain roots and recent entries first: when the disk budget is
    /// short, what is left out is the deepest and least recently used.
    public func persistToDisk() {
        guard let disk, disk.isEnabled else { return }
        let order = prefix.allEntries.sorted { ($0.depth, -prefix.lastUse($0.hash)) < ($1.depth, -prefix.lastUse($1.hash)) }
        disk.writeTogether { for e in order { stageOnDisk(e) } }
    }

    /// Writes what eviction staged (cheap when nothing is).
    public func flushDisk() { disk?.flush() }

    /// Continues the RAM match `ram` (its pages retained by the caller) on disk: reads the
    /// pages up to the deepest boundary whose snapshot the disk has, inserts them into the
    /// prefix cache (retained for the caller too) and attaches that snapshot. Returns the
    /// hits as the prefix cache now holds them (a snapshot may have been reclaimed meanwhile).
    func extendFromDisk(_ prompt: [Int], ramHits ram: [CachedPage], maxPages: Int) -> [CachedPage] {
        guard let disk, disk.isEnabled else { return ram }
        disk.flush()  // staged entries become readable
        let P = layout.pageTokens
        // The chain goes on through disk entries and RAM entries alike (eviction may have taken
        // a chain's root to disk and left deeper pages in RAM).
        var chain: [UInt64] = []
        var h = ram.last?.hash ?? 0
        for i in ram.count..<max(maxPages, ram.count) {
            let slice = prompt[(i * P)..<((i + 1) * P)]
            h = chainedPageHash(previous: h, tokens: slice)
            if let e = prefix.entry(h), !e.isTail, e.tokens.elementsEqual(slice) {
                chain.append(h)
                continue
            }
            guard prefix.entry(h) == nil, disk.contains(h) else { break }
            chain.append(h)
        }
        let hashes = ram.map(\.hash) + chain
        let ramResume = (ram.lastIndex { $0.snapshot != nil } ?? -1) + 1
        // Depths (pages covered) the disk or RAM can resume from, deepest first; and the
        // chain's end when a tail continues it (a swapped-out sequence's pages have no snapshots).
        let depths = (ramResume..<hashes.count).reversed().filter { disk.hasSnapshot(hashes[$0]) || prefix.entry(hashes[$0])?.snapshot != nil }
            .map { $0 + 1 }
        let tailDepth = hashes.count > ram.count && hasTail(prompt, after: hashes) ? hashes.count : 0
        guard let deepest = [depths.first ?? 0, tailDepth].max(), deepest > 0 else {
            disk.recordLookup(hitTokens: 0, missTokens: (maxPages - ramResume) * P, used: [])
            return ram
        }
        // Staging during the read may flush, and flushing may evict: not these entries.
        disk.pinned = Set(hashes)
        defer { disk.pinned = [] }
        var held = loadPages(chain, prompt: prompt, first: ram.count, upTo: deepest)
        var hits = ram.map { prefix.entry($0.hash)! }
        for j in chain.indices {
            guard let e = prefix.entry(chain[j]), held[e.hash] == e.page else { break }
            hits.append(e)
            held[e.hash] = nil
        }
        // Held past a gap (an entry evicted while reading): not hits.
        for (_, page) in held { store.release(page) }
        let resumed = attachSnapshot(disk, hits: hits, depths: depths)
        let gained = max(resumed - ramResume, 0)
        disk.recordLookup(hitTokens: gained * P, missTokens: (maxPages - ramResume - gained) * P, used: Array(hashes.prefix(resumed)))
        return hits.map { prefix.entry($0.hash)! }
    }

    /// Whether RAM or the disk has a tail of `prompt` right after the pages `hashes`.
    private func hasTail(_ prompt: [Int], after hashes: [UInt64]) -> Bool {
        guard let disk else { return false }
        let P = layout.pageTokens
        let start = hashes.count * P, n = min(P - 1, prompt.count - 1 - start)
        guard n > 0 else { return false }
        let parent = hashes.last ?? 0
        if prefix.matchTail(prompt, parent: parent, depth: hashes.count, start: start, maxTokens: n) != nil { return true }
        return PrefixCache.tailHashes(prompt, parent: parent, start: start, count: n).contains { disk.hasSnapshot($0) }
    }

    /// Reads the longest tail at the end of `hits` (the prompt's matched full pages) from disk
    /// into the prefix cache, unless RAM has a tail there already.
    func loadTailFromDisk(_ prompt: [Int], hits: [CachedPage]) {
        guard let disk, disk.isEnabled else { return }
        let P = layout.pageTokens
        let depth = hits.count, start = depth * P
        let n = min(P - 1, prompt.count - 1 - start)
        let parent = hits.last?.hash ?? 0
        guard n > 0, prefix.matchTail(prompt, parent: parent, depth: depth, start: start, maxTokens: n) == nil else { return }
        let keys = PrefixCache.tailHashes(prompt, parent: parent, start: start, count: n)
        guard let length = (1...n).reversed().first(where: { prefix.entry(keys[$0 - 1]) == nil && disk.hasSnapshot(keys[$0 - 1]) }) else { return }
        let hash = keys[length - 1]
        disk.flush()  // a staged entry becomes readable
        disk.pinned = [hash]
        defer { disk.pinned = [] }
        guard let page = allocate(.page) else {
            diskReadShortOfMemory = true
            return
        }
        guard let snapshot = allocate(.snapshot) else {
            diskReadShortOfMemory = true
            store.release(page)
            return
        }
        let read = disk.readPages([hash], tokens: { _ in prompt[start..<(start + length)] }) { _, p in
            store.pages.write(store.slot(page), from: p)
            return true
        }
        guard read == 1, disk.readSnapshot(hash, into: store.pointer(snapshot)) else {
            store.release(page)
            store.release(snapshot)
            return
        }
        prefix.insert(CachedPage(
            hash: hash, page: page, snapshot: snapshot, tokens: Array(prompt[start..<(start + length)]), depth: depth, isTail: true))
        disk.recordLookup(hitTokens: length, missTokens: 0, used: [hash])
    }

    /// Reads chain pages `first..<upTo` (chain index 0 is page `first`) that RAM does not hold
    /// into new page blocks held by the prefix cache; returns every chain page of the span
    /// now held for the caller (RAM links retained first, so eviction cannot take them).
    private func loadPages(_ chain: [UInt64], prompt: [Int], first: Int, upTo depth: Int) -> [UInt64: BlockID] {
        var held: [UInt64: BlockID] = [:]
        guard let disk, depth > first else { return held }
        let P = layout.pageTokens
        let span = Array(chain.prefix(depth - first).enumerated())
        for (_, h) in span { if let e = prefix.entry(h) { store.retain(e.page); held[h] = e.page } }
        let onDisk = span.filter { held[$0.element] == nil }.map(\.offset)
        _ = disk.readPages(onDisk.map { chain[$0] }, tokens: { prompt[((first + onDisk[$0]) * P)..<((first + onDisk[$0] + 1) * P)] }) { k, page in
            guard let id = allocate(.page) else {
                diskReadShortOfMemory = true
                return false
            }
            store.pages.write(store.slot(id), from: page)
            let j = onDisk[k]
            held[chain[j]] = id
            let i = first + j
            prefix.insert(CachedPage(hash: chain[j], page: id, snapshot: nil, tokens: Array(prompt[(i * P)..<((i + 1) * P)]), depth: i))
            store.retain(id)
            return true
        }
        return held
    }

    /// Attaches the deepest disk snapshot that reads back whole to its entry among `hits`;
    /// returns the depth (pages) the prompt can now resume from.
    private func attachSnapshot(_ disk: DiskTier, hits: [CachedPage], depths: [Int]) -> Int {
        let ramResume = (hits.lastIndex { $0.snapshot != nil } ?? -1) + 1
        for d in depths where d <= hits.count && d > ramResume {
            if hits[d - 1].snapshot != nil { return d }  // a RAM link of the chain has one
            guard let s = allocate(.snapshot) else {
                diskReadShortOfMemory = true
                break
            }
            if disk.readSnapshot(hits[d - 1].hash, into: store.pointer(s)), prefix.attach(snapshot: s, to: hits[d - 1].hash) {
                return d
            }
            store.release(s)
        }
        return ramResume
    }
}
