// SafetensorsFile.swift: one memory-mapped .safetensors file and its validated header.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
// Tensors are never copied: views point into the mapping, which lives as long as the file.
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where one tensor lives and what it is.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: TensorDType
    /// Row-major, outermost first.
    public let shape: [Int]
    /// Byte range relative to the start of the data section.
    public let begin: Int
    public let end: Int

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { end - begin }
}

/// A mapped safetensors file.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    /// Tensors in header order.
    public let tensors: [TensorInfo]
    public let metadata: [String: String]
    /// File size in bytes.
    public let fileSize: Int
    private let mapping: UnsafeRawPointer
    /// Kept open for `read(_:)`, which copies bytes without mapping them into this process.
    private let descriptor: Int32
    private let dataStart: Int
    private let index: [String: Int]

    /// Maps `path` read-only and validates its header.
    /// - Throws: `CheckpointError` naming the file (and tensor) on any inconsistency.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            if errno == ENOENT { throw CheckpointError.fileNotFound(path: path) }
            throw CheckpointError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        var keepOpen = false
        defer { if !keepOpen { close(fd) } }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw CheckpointError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw CheckpointError.unreadable(path: path, reason: "is a directory") }
        let size = Int(st.st_size)
        fileSize = size
        guard size >= 8 else { throw CheckpointError.truncated(path: path, reason: "file has \(size) bytes, fewer than the 8-byte header length") }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw CheckpointError.unreadable(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        // Weights are streamed whole during decode: ask for huge pages (the kernel uses them
        // where the file system supports large folios; elsewhere the advice is a no-op).
        _ = madvise(m, size, Int32(MADV_HUGEPAGE))
        let mapping = UnsafeRawPointer(m)
        var ok = false
        defer { if !ok { munmap(m, size) } }

        let headerLength = Int(UInt64(littleEndian: mapping.loadUnaligned(as: UInt64.self)))
        guard headerLength <= size - 8 else {
            throw CheckpointError.truncated(path: path, reason: "header length \(headerLength) exceeds the \(size - 8) bytes after it")
        }
        guard headerLength <= 512 << 20 else {
            throw CheckpointError.corruptHeader(path: path, reason: "header length \(headerLength) is implausibly large")
        }
        dataStart = 8 + headerLength
        let headerData = Data(bytes: mapping + 8, count: headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerData)
        } catch {
            throw CheckpointError.corruptHeader(path: path, reason: "header is not valid JSON")
        }
        guard let dict = json as? [String: Any] else {
            throw CheckpointError.corruptHeader(path: path, reason: "header is not a JSON object")
        }
        var meta: [String: String] = [:]
        var infos: [TensorInfo] = []
        let dataSize = size - dataStart
        for (name, value) in dict {
            if name == "__metadata__" {
                if let m = value as? [String: Any] {
                    for (k, v) in m { meta[k] = "\(v)" }
                }
                continue
            }
            guard let entry = value as? [String: Any] else {
                throw CheckpointError.corruptHeader(path: path, reason: "entry '\(name)' is not an object")
            }
            guard let dtypeName = entry["dtype"] as? String else {
                throw CheckpointError.corruptHeader(path: path, reason: "entry '\(name)' has no dtype")
            }
            guard let dtype = TensorDType(rawValue: dtypeName) else {
                throw CheckpointError.unknownDType(tensor: name, dtype: dtypeName, path: path)
            }
            guard let shapeAny = entry["shape"] as? [Any], let shape = Self.integers(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
                throw CheckpointError.corruptHeader(path: path, reason: "entry '\(name)' has no valid shape")
            }
            guard let offAny = entry["data_offsets"] as? [Any], let off = Self.integers(offAny), off.count == 2 else {
                throw CheckpointError.corruptHeader(path: path, reason: "entry '\(name)' has no valid data_offsets")
            }
            let (count, overflow) = shape.reduce((1, false)) { acc, d in
                let (r, o) = acc.0.multipliedReportingOverflow(by: d)
                return (r, acc.1 || o)
            }
            guard !overflow, off[0] >= 0, off[1] >= off[0] else {
                throw CheckpointError.badDataOffsets(tensor: name, path: path, reason: "invalid shape or offsets \(off)")
            }
            guard off[1] <= dataSize else {
                throw CheckpointError.truncated(path: path, reason: "tensor '\(name)' ends at byte \(off[1]) of a \(dataSize)-byte data section")
            }
            let expected = count.multipliedReportingOverflow(by: dtype.byteCount)
            guard !expected.overflow, expected.partialValue == off[1] - off[0] else {
                throw CheckpointError.badDataOffsets(
                    tensor: name, path: path,
                    reason: "holds \(off[1] - off[0]) bytes but shape \(shape) of \(dtype.rawValue) needs \(expected.partialValue)")
            }
            infos.append(TensorInfo(name: name, dtype: dtype, shape: shape, begin: off[0], end: off[1]))
        }
        infos.sort { $0.begin < $1.begin }
        self.mapping = mapping
        descriptor = fd
        keepOpen = true
        tensors = infos
        metadata = meta
        index = Dictionary(uniqueKeysWithValues: infos.enumerated().map { ($1.name, $0) })
        ok = true
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: mapping), fileSize)
        close(descriptor)
    }

    /// A copy of a tensor's bytes read with pread(2), so that checking a tensor (scales, hash
    /// tables) does not fault its pages, and their neighbours, into this process's mapping.
    /// - Throws: `unreadable` or `truncated`, naming the file.
    public func read(_ info: TensorInfo) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: info.byteCount)
        var done = 0
        try out.withUnsafeMutableBytes { buf in
            while done < info.byteCount {
                let n = pread(descriptor, buf.baseAddress! + done, info.byteCount - done, off_t(dataStart + info.begin + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw CheckpointError.unreadable(path: path, reason: "reading '\(info.name)': \(String(cString: strerror(errno)))")
                }
                if n == 0 { throw CheckpointError.truncated(path: path, reason: "file ends inside '\(info.name)'") }
                done += n
            }
        }
        return out
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in values {
            guard let d = (v as? NSNumber)?.doubleValue, d == d.rounded(), abs(d) < 9.0e15 else { return nil }
            out.append(Int(d))
        }
        return out
    }

    public func info(_ name: String) -> TensorInfo? { index[name].map { tensors[$0] } }

    /// Address of a tensor's first byte.
    public func pointer(to info: TensorInfo) -> UnsafeRawPointer { mapping + dataStart + info.begin }
}
