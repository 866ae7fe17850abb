// CheckpointError.swift: every way reading a checkpoint can fail, each naming what and where.

/// Errors from reading safetensors files and checkpoint folders.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    /// A file or folder that should exist does not.
    case fileNotFound(path: String)
    /// The file could not be opened or mapped.
    case unreadable(path: String, reason: String)
    /// The file is shorter than its header says.
    case truncated(path: String, reason: String)
    /// The JSON header is not valid safetensors.
    case corruptHeader(path: String, reason: String)
    /// A tensor uses a dtype this reader does not know.
    case unknownDType(tensor: String, dtype: String, path: String)
    /// A tensor's byte range disagrees with its shape and dtype, or lies outside the file.
    case badDataOffsets(tensor: String, path: String, reason: String)
    /// A required tensor is absent from every file of the checkpoint in `directory`.
    case missingTensor(name: String, directory: String, files: [String])
    /// A tensor of the file at `path` has the wrong shape.
    case shapeMismatch(tensor: String, path: String, expected: [Int], actual: [Int])
    /// A tensor of the file at `path` has a dtype the consumer cannot use.
    case dtypeMismatch(tensor: String, path: String, expected: String, actual: String)
    /// The same tensor appears in two files.
    case duplicateTensor(name: String, firstPath: String, secondPath: String)
    /// A tensor's values are invalid (e.g. an expert id out of range).
    case invalidValue(tensor: String, path: String, reason: String)
    /// The index file lists a shard that is not in the folder.
    case missingShard(path: String, index: String, tensor: String, tensorCount: Int)
    /// A quantized weight has no scale tensor next to it.
    case missingScale(tensor: String, path: String, expected: [String])
    /// A scale tensor has the wrong shape or dtype, or holds NaN / non-positive scales.
    case badScale(tensor: String, path: String, reason: String)
    /// A packed FP4 tensor's stored width does not match the model's logical width.
    case badPacking(tensor: String, path: String, reason: String)

    public var description: String {
        switch self {
        case .fileNotFound(let p): "file not found: \(p)"
        case .unreadable(let p, let r): "cannot read \(p): \(r)"
        case .truncated(let p, let r): "truncated safetensors file \(p): \(r)"
        case .corruptHeader(let p, let r): "corrupt safetensors header in \(p): \(r)"
        case .unknownDType(let t, let d, let p): "tensor '\(t)' in \(p) has unknown dtype '\(d)'"
        case .badDataOffsets(let t, let p, let r): "tensor '\(t)' in \(p): \(r)"
        case .missingTensor(let n, let d, let f):
            "missing tensor '\(n)': not in \(f.count == 1 ? "" : "any of the \(f.count) files of ")\(d)"
                + (f.isEmpty ? "" : " (\(f.prefix(3).joined(separator: ", "))\(f.count > 3 ? ", …" : ""))")
        case .shapeMismatch(let t, let p, let e, let a): "tensor '\(t)' in \(p) has shape \(a), expected \(e)"
        case .dtypeMismatch(let t, let p, let e, let a): "tensor '\(t)' in \(p) has dtype \(a), expected \(e)"
        case .duplicateTensor(let n, let a, let b): "tensor '\(n)' appears in both \(a) and \(b)"
        case .invalidValue(let t, let p, let r): "tensor '\(t)' in \(p): \(r)"
        case .missingShard(let p, let i, let t, let n):
            "shard \(p) is listed in \(i) for \(n) tensor(s) (e.g. '\(t)') but does not exist"
        case .missingScale(let t, let p, let e):
            "quantized tensor '\(t)' in \(p) has no scale tensor (looked for \(e.map { "'\($0)'" }.joined(separator: ", ")))"
        case .badScale(let t, let p, let r): "scale tensor '\(t)' in \(p): \(r)"
        case .badPacking(let t, let p, let r): "packed FP4 tensor '\(t)' in \(p): \(r)"
        }
    }
}
