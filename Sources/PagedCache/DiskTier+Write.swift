// DiskTier+Write.swift: staging evicted entries, writing them in batches (temporary name,
// then rename), and evicting files to stay within the byte budget.
import Foundation
import Glibc

extension DiskTier {
    /// Staged bytes that trigger a write batch.
    static let flushBytes = 32 << 20
    static let flushEntries = 64

    /// Whether the tier holds `hash`, and with a snapshot.
    public func contains(_ hash: UInt64) -> Bool { index[hash] != nil || pending.contains { $0.header.hash == hash } }
    public func hasSnapshot(_ hash: UInt64) -> Bool {
        (index[hash]?.header.snapshotBytes ?? 0) > 0 || pending.contains { $0.header.hash == hash && $0.header.snapshotBytes > 0 }
    }

    /// Queues an entry for writing unless the tier already has it (with a snapshot, when
    /// `snapshot` is given). Writes the queue when it is large enough.
    /// - Parameters:
    ///   - fillPage: writes the page's `pageFloats` values into the buffer it is given.
    ///   - snapshot: the state at the page's end (`stateFloats` values), if the entry has one.
    ///   - depth: the page's index in its chain.
    public func stage(
        hash: UInt64, depth: Int, tokens: [Int], fillPage: (UnsafeMutablePointer<Float>) -> Void, snapshot: UnsafePointer<Float>?
    ) {
        guard isEnabled, !hasSnapshot(hash), snapshot != nil || !contains(hash) else { return }
        let image = DiskEntryImage(
            fingerprint: fingerprint, hash: hash, depth: depth, tokens: tokens, layout: layout, fillPage: fillPage, snapshot: snapshot)
        if let i = pending.firstIndex(where: { $0.header.hash == hash }) {
            pendingBytes -= pending[i].header.fileBytes
            pending[i].free()
            pending.remove(at: i)
        }
        pending.append(image)
        pendingBytes += image.header.fileBytes
        if pendingBytes >= Self.flushBytes || pending.count >= Self.flushEntries { flush() }
    }

    /// Writes every staged entry: one batch of writes to temporary files, then a rename each.
    /// A failure turns the tier off (logged).
    public func flush() {
        guard isEnabled, !pending.isEmpty else { return }
        if group == nil { clock += 1 }  // one tick per batch (or group): its entries are equally recent
        let batchBytes = pending.reduce(0) { $0 + $1.header.fileBytes }
        evictToFit(adding: batchBytes)
        // Staged order is priority order (roots first): what still does not fit is left out.
        var batch: [DiskEntryImage] = []
        var room = budgetBytes - usedBytes
        for e in pending {
            if e.header.fileBytes <= room {
                batch.append(e)
                room -= e.header.fileBytes
            } else {
                e.free()
            }
        }
        pending.removeAll()
        pendingBytes = 0
        defer { for e in batch { e.free() } }
        var transfers: [DiskTransfer] = []
        var temps: [String] = []
        for e in batch {
            let temp = path("." + fileName(e.header.hash) + ".\(getpid()).tmp")
            let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                let err = String(cString: strerror(errno))
                for t in transfers { close(t.fd) }
                for t in temps { unlink(t) }
                disable("cannot create \(temp): \(err)")
                return
            }
            temps.append(temp)
            transfers.append(DiskTransfer(fd: fd, isWrite: true, buffer: e.bytes, length: e.header.fileBytes, offset: 0))
        }
        let start = ContinuousClock.now
        io.run(&transfers)
        counters.writeSeconds += seconds(ContinuousClock.now - start)
        var failure: String?
        for (i, e) in batch.enumerated() {
            close(transfers[i].fd)
            guard failure == nil, transfers[i].result == e.header.fileBytes,
                rename(temps[i], path(fileName(e.header.hash))) == 0
            else {
                let r = transfers[i].result
                failure = failure ?? (r < 0 ? "writing \(temps[i]): \(String(cString: strerror(Int32(-r))))"
                    : r != e.header.fileBytes ? "short write to \(temps[i])" : "renaming \(temps[i]): \(String(cString: strerror(errno)))")
                unlink(temps[i])
                continue
            }
            record(written: e.header)
        }
        if let failure { disable(failure) }
    }

    /// Writes what `body` stages as one group (shutdown's flush of every RAM entry): one
    /// recency tick, and entries of the group never evict each other (what does not fit
    /// is left out, in staging order).
    public func writeTogether(_ body: () -> Void) {
        guard isEnabled else { return }
        clock += 1
        group = clock
        let saved = pinned
        let before = counters, start = ContinuousClock.now
        body()
        flush()
        group = nil
        pinned = saved
        let entries = counters.entriesWritten - before.entriesWritten, bytes = counters.writtenBytes - before.writtenBytes
        let s = seconds(ContinuousClock.now - start)
        if isEnabled { log("disk cache: wrote \(entries) entries (\(bytes) bytes) in \(String(format: "%.2f", s)) s; \(index.count) on disk") }
    }

    private func record(written h: DiskEntryHeader) {
        if let old = index[h.hash] { usedBytes -= old.header.fileBytes }
        index[h.hash] = DiskEntryInfo(header: h, lastUse: clock, hits: index[h.hash]?.hits ?? 0)
        if group != nil { pinned.insert(h.hash) }
        usedBytes += h.fileBytes
        counters.writtenBytes += h.fileBytes
        counters.entriesWritten += 1
    }

    /// Removes entries until `adding` more bytes fit the budget: least recently used first;
    /// among entries used together (one write batch, one prompt's read) those never read
    /// back, then the deepest, go first, so chain roots (which every deeper entry needs) stay
    /// longest. Pinned entries stay.
    func evictToFit(adding: Int) {
        while usedBytes + adding > budgetBytes {
            var victim: (hash: UInt64, key: (Int, Int, Int))?
            for (h, e) in index where !pinned.contains(h) {
                let key = (e.lastUse, min(e.hits, 1), -e.header.depth)
                if victim == nil || key < victim!.key { victim = (h, key) }
            }
            guard let v = victim else { return }
            remove(v.hash)
            counters.evictedEntries += 1
        }
    }

    /// Forgets an entry and deletes its file.
    func remove(_ hash: UInt64) {
        guard let e = index.removeValue(forKey: hash) else { return }
        usedBytes -= e.header.fileBytes
        unlink(path(fileName(hash)))
    }

    /// Marks entries used together (one tick: eviction then takes the deepest first).
    func touch(_ hashes: [UInt64]) {
        clock += 1
        for h in hashes where index[h] != nil {
            index[h]!.lastUse = clock
            index[h]!.hits += 1
        }
    }
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
