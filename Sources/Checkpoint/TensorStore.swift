// TensorStore.swift: a checkpoint folder (one safetensors file or shards with an index),
// mapped, with name lookups that check dtype and shape.
import Foundation
import Tensors

/// A tensor found in a store: its description and where its bytes are.
public struct TensorView: @unchecked Sendable {
    public let info: TensorInfo
    public let file: SafetensorsFile
    public var name: String { info.name }
    public var dtype: TensorDType { info.dtype }
    public var shape: [Int] { info.shape }
    public var pointer: UnsafeRawPointer { file.pointer(to: info) }

    public init(info: TensorInfo, file: SafetensorsFile) {
        self.info = info
        self.file = file
    }

    /// The tensor as a matrix `[shape[0], product(rest)]` in its stored format.
    /// Quantized weights need their scales: read them with `TensorStore.matrix(_:rows:cols:)`.
    public func matrix() throws -> WeightMatrix {
        guard let st = dtype.storageType, !st.isQuantized else {
            throw CheckpointError.dtypeMismatch(tensor: name, path: file.path, expected: "F32, BF16 or F16", actual: dtype.rawValue)
        }
        let rows = shape.first ?? 1
        let cols = shape.dropFirst().reduce(1, *)
        return WeightMatrix(rows: rows, cols: cols, type: st, base: pointer, owner: file)
    }

    /// The tensor decoded to fp32 (for small tensors: norms, biases, sinks).
    public func floats() throws -> [Float] {
        guard let st = dtype.storageType, !st.isQuantized else {
            throw CheckpointError.dtypeMismatch(tensor: name, path: file.path, expected: "F32, BF16 or F16", actual: dtype.rawValue)
        }
        var out = [Float](repeating: 0, count: info.elementCount)
        let bytes = try file.read(info)  // a copy: the mapped pages (and their neighbours) stay untouched
        bytes.withUnsafeBytes { b in
            out.withUnsafeMutableBufferPointer { decode(b.baseAddress!, type: st, count: info.elementCount, into: $0.baseAddress!) }
        }
        return out
    }

    /// The tensor as integers (I64, I32, I16, I8, U8…).
    public func integers() throws -> [Int] {
        let n = info.elementCount
        let bytes = try file.read(info)  // a copy: the mapped pages stay untouched
        return try bytes.withUnsafeBytes { try integers(n, $0.baseAddress!) }
    }

    private func integers(_ n: Int, _ p: UnsafeRawPointer) throws -> [Int] {
        switch dtype {
        case .i64: return (0..<n).map { Int(p.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        case .i32: return (0..<n).map { Int(p.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        case .i16: return (0..<n).map { Int(p.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self)) }
        case .i8: return (0..<n).map { Int(p.load(fromByteOffset: $0, as: Int8.self)) }
        case .u8: return (0..<n).map { Int(p.load(fromByteOffset: $0, as: UInt8.self)) }
        default:
            throw CheckpointError.dtypeMismatch(tensor: name, path: file.path, expected: "an integer dtype", actual: dtype.rawValue)
        }
    }
}

/// Progress of opening a checkpoint folder, reported once per shard.
public struct LoadProgress: Sendable {
    /// 1-based index of the shard just mapped and verified, and the number of shards.
    public let shard: Int
    public let shardCount: Int
    public let path: String
    /// Bytes of that shard, and of all shards mapped so far / in total.
    public let shardBytes: Int
    public let bytesDone: Int
    public let bytesTotal: Int
    /// Tensors of that shard whose header entries were verified: known dtype, byte range
    /// consistent with shape and dtype and inside the file, not in another shard, and in the
    /// shard the index names.
    public let tensorCount: Int
}

/// All tensors of a checkpoint folder, memory-mapped.
public final class TensorStore: @unchecked Sendable {
    public let directory: String
    public let files: [SafetensorsFile]
    private let byName: [String: (file: Int, info: TensorInfo)]

    /// Every tensor name, sorted.
    public var names: [String] { byName.keys.sorted() }

    /// Opens the shards of `model.safetensors.index.json`, else `model.safetensors`, else every
    /// `*.safetensors` in the folder.
    /// - Parameter progress: called after each shard is mapped and its header verified.
    public init(directory: String, progress: ((LoadProgress) -> Void)? = nil) throws {
        self.directory = directory
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw CheckpointError.fileNotFound(path: directory)
        }
        let indexPath = (directory as NSString).appendingPathComponent("model.safetensors.index.json")
        var expectedShard: [String: String] = [:]
        var shardNames: [String]
        if fm.fileExists(atPath: indexPath) {
            guard let data = fm.contents(atPath: indexPath),
                let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let map = obj["weight_map"] as? [String: String]
            else {
                throw CheckpointError.corruptHeader(path: indexPath, reason: "no valid \"weight_map\" object")
            }
            expectedShard = map
            shardNames = Array(Set(map.values)).sorted()
            for s in shardNames where !fm.fileExists(atPath: (directory as NSString).appendingPathComponent(s)) {
                let listed = map.filter { $0.value == s }.keys.sorted()
                throw CheckpointError.missingShard(
                    path: (directory as NSString).appendingPathComponent(s), index: indexPath,
                    tensor: listed.first ?? "", tensorCount: listed.count)
            }
        } else if fm.fileExists(atPath: (directory as NSString).appendingPathComponent("model.safetensors")) {
            // NOTE: as transformers does: other safetensors next to it (a fixture's
            // reference.safetensors, an adapter) are not part of the model.
            shardNames = ["model.safetensors"]
        } else {
            shardNames = ((try? fm.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasSuffix(".safetensors") }.sorted()
            guard !shardNames.isEmpty else {
                throw CheckpointError.fileNotFound(path: (directory as NSString).appendingPathComponent("model.safetensors"))
            }
        }
        var files: [SafetensorsFile] = []
        var byName: [String: (file: Int, info: TensorInfo)] = [:]
        let sizes = shardNames.map { s in
            ((try? fm.attributesOfItem(atPath: (directory as NSString).appendingPathComponent(s)))?[.size] as? NSNumber)?.intValue ?? 0
        }
        let totalBytes = sizes.reduce(0, +)
        var doneBytes = 0
        for (i, shard) in shardNames.enumerated() {
            let path = (directory as NSString).appendingPathComponent(shard)
            let f = try SafetensorsFile(path: path)
            doneBytes += f.fileSize
            for info in f.tensors {
                if let prev = byName[info.name] {
                    throw CheckpointError.duplicateTensor(name: info.name, firstPath: files[prev.file].path, secondPath: path)
                }
                if let want = expectedShard[info.name], want != shard {
                    throw CheckpointError.corruptHeader(path: indexPath, reason: "index puts '\(info.name)' in \(want) but it is in \(shard)")
                }
                byName[info.name] = (files.count, info)
            }
            files.append(f)
            progress?(LoadProgress(shard: i + 1, shardCount: shardNames.count, path: path, shardBytes: f.fileSize,
                                   bytesDone: doneBytes, bytesTotal: max(totalBytes, doneBytes), tensorCount: f.tensors.count))
        }
        for (name, shard) in expectedShard where byName[name] == nil {
            throw CheckpointError.corruptHeader(path: indexPath, reason: "index lists '\(name)' in \(shard) but that file does not hold it")
        }
        self.files = files
        self.byName = byName
    }

    public func contains(_ name: String) -> Bool { byName[name] != nil }

    /// Bytes of all files of the store.
    public var fileBytes: Int { files.reduce(0) { $0 + $1.fileSize } }

    /// The tensor called `name`, or nil.
    public func view(_ name: String) -> TensorView? {
        byName[name].map { TensorView(info: $0.info, file: files[$0.file]) }
    }

    /// The tensor called `name`, checked against `shape` when given.
    /// - Throws: `missingTensor` or `shapeMismatch`, naming the tensor and its folder or file.
    public func tensor(_ name: String, shape: [Int]? = nil) throws -> TensorView {
        guard let v = view(name) else { throw missing(name) }
        if let shape, v.shape != shape { throw CheckpointError.shapeMismatch(tensor: name, path: v.file.path, expected: shape, actual: v.shape) }
        return v
    }

    /// The error for a tensor (spelled `name`) that no file of this store holds.
    public func missing(_ name: String) -> CheckpointError {
        .missingTensor(name: name, directory: directory, files: files.map { ($0.path as NSString).lastPathComponent })
    }

    /// Total bytes of tensor data by dtype.
    public var bytesByDType: [TensorDType: Int] {
        var out: [TensorDType: Int] = [:]
        for (_, e) in byName { out[e.info.dtype, default: 0] += e.info.byteCount }
        return out
    }
}
