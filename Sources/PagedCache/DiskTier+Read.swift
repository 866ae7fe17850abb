// DiskTier+Read.swift: reading a chain of entries back (batched), every byte checked before
// it is used.
import Glibc

extension DiskTier {
    /// Entries read per batch (bounds open files and staging memory).
    static let readBatch = 128

    /// Reads the pages of the chain `hashes` (in order), in batches: for each entry its
    /// header, tokens and page in one read. Every entry is checked (header, checksum, that it
    /// holds `tokens(i)`) and handed to `deliver` in order; the first that fails the check
    /// (logged; a damaged file is removed) or that `deliver` refuses ends the read.
    /// - Returns: the number of pages delivered.
    public func readPages(
        _ hashes: [UInt64], tokens: (Int) -> ArraySlice<Int>, deliver: (Int, UnsafePointer<Float>) -> Bool
    ) -> Int {
        guard isEnabled else { return 0 }
        var delivered = 0
        while delivered < hashes.count {
            let chunk = Array(hashes[delivered..<min(delivered + Self.readBatch, hashes.count)])
            let n = readChunk(chunk, first: delivered, tokens: tokens, deliver: deliver)
            delivered += n
            if n < chunk.count { break }
        }
        return delivered
    }

    private func readChunk(
        _ hashes: [UInt64], first: Int, tokens: (Int) -> ArraySlice<Int>, deliver: (Int, UnsafePointer<Float>) -> Bool
    ) -> Int {
        let headers = hashes.prefix { index[$0] != nil }.map { index[$0]!.header }
        let stride = ((headers.first?.bodyEnd ?? 0) + 4095) / 4096 * 4096
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(headers.count * stride, 1), alignment: 4096)
        defer { buffer.deallocate() }
        var transfers: [DiskTransfer] = []
        for (i, h) in headers.enumerated() {
            let fd = open(path(fileName(h.hash)), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                reject(h.hash, "cannot open its file")
                break
            }
            transfers.append(DiskTransfer(fd: fd, isWrite: false, buffer: buffer + i * stride, length: h.bodyEnd, offset: 0))
        }
        defer { for t in transfers { close(t.fd) } }
        let start = ContinuousClock.now
        io.run(&transfers)
        counters.readSeconds += seconds(ContinuousClock.now - start)
        for (i, t) in transfers.enumerated() {
            counters.readBytes += max(t.result, 0)
            if let problem = verify(t, expected: headers[i], tokens: tokens(first + i)) {
                if let problem { reject(headers[i].hash, problem) }
                return i
            }
            let page = UnsafePointer((t.buffer + DiskEntryHeader.size + 4 * headers[i].tokenCount).assumingMemoryBound(to: Float.self))
            guard deliver(first + i, page) else { return i }
            counters.entriesRead += 1
        }
        return transfers.count
    }

    /// Why a page read cannot be used: nil when it can; .some(nil) when the entry is sound
    /// but holds other tokens (a hash collision: the chain ends without blaming the file).
    private func verify(_ t: DiskTransfer, expected: DiskEntryHeader, tokens: ArraySlice<Int>) -> String?? {
        guard t.result == expected.bodyEnd else {
            return .some(t.result < 0 ? "read failed: \(String(cString: strerror(Int32(-t.result))))" : "truncated: \(t.result) of \(expected.bodyEnd) bytes")
        }
        switch check(DiskEntryHeader.parse(t.buffer, count: t.result), fileSize: expected.fileBytes) {
        case .failure(let p): return .some("\(p)")
        case .success(let h) where h != expected: return .some("header changed since startup")
        case .success: break
        }
        let body = t.buffer + DiskEntryHeader.size
        guard crc32c(body, expected.bodyEnd - DiskEntryHeader.size) == expected.bodyCRC else { return .some("page checksum mismatch") }
        guard entryTokens(t.buffer, count: expected.tokenCount).elementsEqual(tokens) else { return .some(nil) }
        return nil
    }

    /// Drops a damaged entry (file removed) with one log line.
    func reject(_ hash: UInt64, _ why: String) {
        log("disk cache: entry \(fileName(hash)) skipped: \(why); recomputing from there")
        counters.corruptEntries += 1
        remove(hash)
    }

    /// Reads the snapshot of entry `hash` into `state` (`stateFloats` values) and checks it.
    /// - Returns: false when the entry has no snapshot or it is damaged (logged, file removed).
    public func readSnapshot(_ hash: UInt64, into state: UnsafeMutablePointer<Float>) -> Bool {
        guard isEnabled, let h = index[hash]?.header, h.snapshotBytes == layout.stateBytes else { return false }
        let fd = open(path(fileName(hash)), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            reject(hash, "cannot open its file")
            return false
        }
        defer { close(fd) }
        var t = [DiskTransfer(fd: fd, isWrite: false, buffer: UnsafeMutableRawPointer(state), length: h.snapshotBytes, offset: h.bodyEnd)]
        let start = ContinuousClock.now
        io.run(&t)
        counters.readSeconds += seconds(ContinuousClock.now - start)
        counters.readBytes += max(t[0].result, 0)
        guard t[0].result == h.snapshotBytes else {
            reject(hash, t[0].result < 0 ? "snapshot read failed: \(String(cString: strerror(Int32(-t[0].result))))" : "snapshot truncated")
            return false
        }
        guard crc32c(state, h.snapshotBytes) == h.snapshotCRC else {
            reject(hash, "snapshot checksum mismatch")
            return false
        }
        return true
    }

    /// Records a prompt lookup past the RAM hit: `hit` tokens served from disk, `miss` not.
    public func recordLookup(hitTokens: Int, missTokens: Int, used: [UInt64]) {
        counters.hitTokens += hitTokens
        counters.missTokens += missTokens
        touch(used)
    }
}
