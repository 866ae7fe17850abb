// SafetensorsWriter.swift: writes tensors to a .safetensors file (outputs, generated models).
import Foundation

/// One tensor to write: its dtype, shape and raw little-endian bytes.
public struct TensorBlob: Sendable {
    public let dtype: TensorDType
    public let shape: [Int]
    public let bytes: Data

    public init(dtype: TensorDType, shape: [Int], bytes: Data) {
        precondition(bytes.count == shape.reduce(1, *) * dtype.byteCount, "bytes must match shape and dtype")
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// An F32 tensor.
    public init(shape: [Int], floats: [Float]) {
        self.init(dtype: .f32, shape: shape, bytes: floats.withUnsafeBufferPointer { Data(buffer: $0) })
    }
}

public enum SafetensorsWriter {
    /// Reads every tensor of the safetensors file at `path`, lets `edit` change, add or remove
    /// tensors, and writes the result back in place (metadata is not kept). For small files:
    /// all tensors are copied into memory.
    public static func rewrite(_ path: String, _ edit: (inout [String: TensorBlob]) throws -> Void) throws {
        var tensors: [String: TensorBlob] = [:]
        do {
            let f = try SafetensorsFile(path: path)
            for info in f.tensors {
                tensors[info.name] = TensorBlob(dtype: info.dtype, shape: info.shape, bytes: Data(bytes: f.pointer(to: info), count: info.byteCount))
            }
        }
        try edit(&tensors)
        try FileManager.default.removeItem(atPath: path)
        try write(tensors, to: path)
    }

    /// Writes `tensors` (name → blob) to `path`, with an optional `__metadata__` map.
    public static func write(_ tensors: [String: TensorBlob], metadata: [String: String] = [:], to path: String) throws {
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let m = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }.joined(separator: ",")
            parts.append("\"__metadata__\":{\(m)}")
        }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonString(name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}")
            offset += t.bytes.count
        }
        header += parts.joined(separator: ",") + "}"
        var headerData = Data(header.utf8)
        while headerData.count % 8 != 0 { headerData.append(0x20) }
        // Stream to the file in bounded writes (one write(2) moves at most ~2 GB on Linux).
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw CheckpointError.unreadable(path: path, reason: "cannot create file")
        }
        defer { try? handle.close() }
        var len = UInt64(headerData.count).littleEndian
        do {
            try handle.write(contentsOf: Data(bytes: &len, count: 8))
            try handle.write(contentsOf: headerData)
            let chunk = 64 << 20
            for name in names {
                let bytes = tensors[name]!.bytes
                var start = 0
                while start < bytes.count {
                    let end = min(start + chunk, bytes.count)
                    try handle.write(contentsOf: bytes[(bytes.startIndex + start)..<(bytes.startIndex + end)])
                    start = end
                }
            }
        } catch {
            throw CheckpointError.unreadable(path: path, reason: "write failed: \(error)")
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
