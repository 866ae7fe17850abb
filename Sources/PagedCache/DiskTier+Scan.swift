// DiskTier+Scan.swift: rebuilding the index at startup from the entry files' headers.
import Foundation
import Glibc

extension DiskTier {
    /// What the scan found, for its one log line.
    struct ScanReport {
        var kept = 0
        var corrupt: [String] = []
        var foreignModel: [String] = []
        var foreignVersion: [String] = []
        var leftovers = 0

        var line: String {
            var skipped: [String] = []
            if !corrupt.isEmpty { skipped.append("\(corrupt.count) damaged, removed (\(corrupt.prefix(3).joined(separator: ", ")))") }
            if !foreignModel.isEmpty { skipped.append("\(foreignModel.count) of another model or cache dtype (\(foreignModel.prefix(3).joined(separator: ", ")))") }
            if !foreignVersion.isEmpty { skipped.append("\(foreignVersion.count) of another format version (\(foreignVersion.prefix(3).joined(separator: ", ")))") }
            if leftovers > 0 { skipped.append("\(leftovers) unfinished writes, removed") }
            return skipped.isEmpty ? "" : "; skipped \(skipped.joined(separator: "; "))"
        }
    }

    /// Reads every entry file's header (in batches) and indexes those of this model, oldest
    /// modification first (recency survives restarts through mtimes).
    func scan() {
        var report = ScanReport()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var found: [(name: String, header: DiskEntryHeader, mtime: Int)] = []
        for name in names where name.hasSuffix(".tmp") {
            unlink(path(name))
            report.leftovers += 1
        }
        let entries = names.filter { $0.hasSuffix(".kv") }.sorted()
        for start in stride(from: 0, to: entries.count, by: 256) {
            found += readHeaders(Array(entries[start..<min(start + 256, entries.count)]), report: &report)
        }
        // Recency from modification times, to the second (a batch's files share a tick).
        let oldest = found.map(\.mtime).min() ?? 0
        for f in found.sorted(by: { $0.mtime < $1.mtime }) {
            // A file named for another hash (copied in by hand) is renamed to its own.
            if f.name != fileName(f.header.hash) { rename(path(f.name), path(fileName(f.header.hash))) }
            guard index[f.header.hash] == nil else { continue }
            let tick = (f.mtime - oldest) / 1_000_000_000 + 1
            clock = max(clock, tick)
            index[f.header.hash] = DiskEntryInfo(header: f.header, lastUse: tick)
            usedBytes += f.header.fileBytes
            report.kept += 1
        }
        counters.corruptEntries += report.corrupt.count
        log("disk cache: \(directory): \(report.kept) entries, \(usedBytes) bytes of a \(budgetBytes)-byte budget\(report.line)")
        evictToFit(adding: 0)
    }

    /// Reads and checks the headers of `names`; damaged files are removed.
    private func readHeaders(_ names: [String], report: inout ScanReport) -> [(name: String, header: DiskEntryHeader, mtime: Int)] {
        var transfers: [DiskTransfer] = []
        var files: [(name: String, fd: Int32, size: Int, mtime: Int)] = []
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: names.count * DiskEntryHeader.size, alignment: 4096)
        defer { buffer.deallocate() }
        for name in names {
            let fd = open(path(name), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            var st = stat()
            fstat(fd, &st)
            transfers.append(DiskTransfer(
                fd: fd, isWrite: false, buffer: buffer + files.count * DiskEntryHeader.size, length: DiskEntryHeader.size, offset: 0))
            files.append((name, fd, Int(st.st_size), st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec))
        }
        io.run(&transfers)
        var out: [(name: String, header: DiskEntryHeader, mtime: Int)] = []
        for (i, f) in files.enumerated() {
            close(f.fd)
            switch check(DiskEntryHeader.parse(transfers[i].buffer, count: max(transfers[i].result, 0)), fileSize: f.size) {
            case .success(let h): out.append((f.name, h, f.mtime))
            case .failure(.foreignVersion): report.foreignVersion.append(f.name)
            case .failure(.foreignModel): report.foreignModel.append(f.name)
            case .failure:
                report.corrupt.append(f.name)
                unlink(path(f.name))
            }
        }
        return out
    }

    /// A parsed header checked against this model and the file's size.
    func check(_ parsed: Result<DiskEntryHeader, DiskEntryHeader.Problem>, fileSize: Int) -> Result<DiskEntryHeader, DiskEntryHeader.Problem> {
        guard case .success(let h) = parsed else { return parsed }
        guard h.fingerprint == fingerprint else { return .failure(.foreignModel) }
        // A tail (a snapshot inside a page) holds fewer tokens than a page.
        guard h.pageTokens == layout.pageTokens, (1...layout.pageTokens).contains(h.tokenCount), h.pageBytes == layout.pageBytes,
            h.snapshotBytes == 0 || h.snapshotBytes == layout.stateBytes
        else { return .failure(.corrupt("sizes do not match the layout")) }
        guard fileSize == h.fileBytes else { return .failure(.corrupt("\(fileSize) bytes, header says \(h.fileBytes): truncated")) }
        return .success(h)
    }
}
