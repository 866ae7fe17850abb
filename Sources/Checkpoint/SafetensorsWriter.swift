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
        var out = Data()
        var len = UInt64(headerData.count).littleEndian
        out.append(Data(bytes: &len, count: 8))
        out.append(headerData)
        for name in names { out.append(tensors[name]!.bytes) }
        guard FileManager.default.createFile(atPath: path, contents: out) else {
            throw CheckpointError.unreadable(path: path, reason: "cannot write file")
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
