// DiskEntry.swift: the file format of one disk-cache entry (a history page, its tokens and,
// when there is one, the state snapshot at its end).
//
//   [header: 128 bytes, little-endian]
//      0 magic "dsv4kve\0"      8 format version (u32)   12 header bytes (u32, 128)
//     16 model fingerprint (u64)                          24 chained page hash (u64)
//     32 page tokens (u32)      36 token count (u32)
//     40 page bytes (u64)       48 snapshot bytes (u64, 0: none)
//     56 CRC-32C of tokens + page (u32)                   60 CRC-32C of the snapshot (u32)
//     64 page index in its chain (u32)    68 reserved (zero)    124 CRC-32C of bytes 0..<124 (u32)
//   [tokens: token count × i32] [page: page bytes] [snapshot: snapshot bytes]
//
// Every byte is under a checksum. The snapshot comes last so a reader takes the header,
// tokens and page in one read and only the snapshot it resumes from.
import ModelRuntime

/// The fixed part of an entry file.
struct DiskEntryHeader: Equatable {
    static let magic: [UInt8] = Array("dsv4kve\0".utf8)
    static let version: UInt32 = 1
    static let size = 128

    var fingerprint: UInt64
    var hash: UInt64
    var pageTokens: Int
    var tokenCount: Int
    var pageBytes: Int
    var snapshotBytes: Int
    /// The page's index in its chain (0: the prompt's first page).
    var depth: Int
    var bodyCRC: UInt32 = 0
    var snapshotCRC: UInt32 = 0

    /// Bytes of header, tokens and page: what a page read takes.
    var bodyEnd: Int { Self.size + tokenCount * 4 + pageBytes }
    var fileBytes: Int { bodyEnd + snapshotBytes }

    func write(to p: UnsafeMutableRawPointer) {
        p.initializeMemory(as: UInt8.self, repeating: 0, count: Self.size)
        for (i, b) in Self.magic.enumerated() { p.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
        p.storeBytes(of: Self.version.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt32(Self.size).littleEndian, toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: fingerprint.littleEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: hash.littleEndian, toByteOffset: 24, as: UInt64.self)
        p.storeBytes(of: UInt32(pageTokens).littleEndian, toByteOffset: 32, as: UInt32.self)
        p.storeBytes(of: UInt32(tokenCount).littleEndian, toByteOffset: 36, as: UInt32.self)
        p.storeBytes(of: UInt64(pageBytes).littleEndian, toByteOffset: 40, as: UInt64.self)
        p.storeBytes(of: UInt64(snapshotBytes).littleEndian, toByteOffset: 48, as: UInt64.self)
        p.storeBytes(of: bodyCRC.littleEndian, toByteOffset: 56, as: UInt32.self)
        p.storeBytes(of: snapshotCRC.littleEndian, toByteOffset: 60, as: UInt32.self)
        p.storeBytes(of: UInt32(depth).littleEndian, toByteOffset: 64, as: UInt32.self)
        p.storeBytes(of: crc32c(p, 124).littleEndian, toByteOffset: 124, as: UInt32.self)
    }

    /// Why bytes are not a usable header.
    enum Problem: Error, Equatable, CustomStringConvertible {
        /// Not an entry, or damaged (magic, checksum or sizes wrong).
        case corrupt(String)
        /// An entry of another format version.
        case foreignVersion(UInt32)
        /// An entry of another model, cache dtype or page layout (fingerprint differs).
        case foreignModel

        var description: String {
            switch self {
            case .corrupt(let why): "corrupt (\(why))"
            case .foreignVersion(let v): "format version \(v), not \(DiskEntryHeader.version)"
            case .foreignModel: "written for another model or cache dtype"
            }
        }
    }

    /// Parses the first `size` bytes of a file (`count` of them were read).
    static func parse(_ p: UnsafeRawPointer, count: Int) -> Result<DiskEntryHeader, Problem> {
        guard count >= size else { return .failure(.corrupt("\(count)-byte header")) }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        guard (0..<8).allSatisfy({ p.load(fromByteOffset: $0, as: UInt8.self) == magic[$0] }) else {
            return .failure(.corrupt("not a dsv4 cache entry"))
        }
        guard u32(124) == crc32c(p, 124) else { return .failure(.corrupt("header checksum mismatch")) }
        guard u32(8) == version else { return .failure(.foreignVersion(u32(8))) }
        let pageBytes = u64(40), snapshotBytes = u64(48)
        guard u32(12) == UInt32(size), pageBytes < 1 << 40, snapshotBytes < 1 << 40 else { return .failure(.corrupt("sizes out of range")) }
        return .success(DiskEntryHeader(
            fingerprint: u64(16), hash: u64(24), pageTokens: Int(u32(32)), tokenCount: Int(u32(36)), pageBytes: Int(pageBytes),
            snapshotBytes: Int(snapshotBytes), depth: Int(u32(64)), bodyCRC: u32(56), snapshotCRC: u32(60)))
    }
}

/// An entry image in memory, ready to be written: header, tokens, page and snapshot in one
/// buffer (owned; `free()` when done).
struct DiskEntryImage {
    let header: DiskEntryHeader
    let bytes: UnsafeMutableRawPointer

    /// Serialises a page (`fillPage` writes its `pageFloats` values) and an optional snapshot
    /// (`stateFloats` values).
    init(
        fingerprint: UInt64, hash: UInt64, depth: Int, tokens: [Int], layout: CacheLayout, fillPage: (UnsafeMutablePointer<Float>) -> Void,
        snapshot: UnsafePointer<Float>?
    ) {
        var h = DiskEntryHeader(
            fingerprint: fingerprint, hash: hash, pageTokens: layout.pageTokens, tokenCount: tokens.count, pageBytes: layout.pageBytes,
            snapshotBytes: snapshot == nil ? 0 : layout.stateBytes, depth: depth)
        bytes = UnsafeMutableRawPointer.allocate(byteCount: h.fileBytes, alignment: 4096)
        let tokenBase = bytes + DiskEntryHeader.size
        for (i, t) in tokens.enumerated() { tokenBase.storeBytes(of: Int32(truncatingIfNeeded: t).littleEndian, toByteOffset: 4 * i, as: Int32.self) }
        fillPage((tokenBase + 4 * tokens.count).assumingMemoryBound(to: Float.self))
        if let snapshot { (bytes + h.bodyEnd).copyMemory(from: snapshot, byteCount: h.snapshotBytes) }
        h.bodyCRC = crc32c(tokenBase, h.bodyEnd - DiskEntryHeader.size)
        h.snapshotCRC = snapshot == nil ? 0 : crc32c(bytes + h.bodyEnd, h.snapshotBytes)
        h.write(to: bytes)
        header = h
    }

    func free() { bytes.deallocate() }
}

/// The tokens stored in an entry body (after the header), as ints.
func entryTokens(_ body: UnsafeRawPointer, count: Int) -> [Int] {
    (0..<count).map { Int(Int32(littleEndian: body.loadUnaligned(fromByteOffset: DiskEntryHeader.size + 4 * $0, as: Int32.self))) }
}

/// FNV-1a (64-bit) of a string's UTF-8 bytes: the model fingerprint.
func fnv1a64(_ s: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01B3
    }
    return h
}

/// The fingerprint of cache entries: the layout's shape and storage, plus what the caller
/// knows of the model's identity (config, checkpoint, cache dtype).
public func cacheFingerprint(layout: CacheLayout, modelIdentity: String) -> UInt64 {
    let regions = layout.pageRegions.map(String.init).joined(separator: ",")
    return fnv1a64(
        "pageTokens=\(layout.pageTokens);pageFloats=\(layout.pageFloats);stateFloats=\(layout.stateFloats);regions=\(regions);"
            + "storage=\(layout.storage);model=\(modelIdentity)")
}
