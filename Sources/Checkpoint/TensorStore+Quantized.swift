// TensorStore+Quantized.swift: weight matrices stored as DeepSeek releases them (the released safetensors; OCP FP8 and MX formats):
// FP8 E4M3 with one scale per 128×128 tile, FP4 E2M1 packed two per I8 byte with one scale per
// 32 inputs, scales as E8M0 or float32 in a companion tensor. Nothing is dequantized here:
// the matrix points into the mapped file and the kernels decode as they multiply.
import Tensors

extension TensorStore {
    /// FP8 weights: one scale per `fp8Block`×`fp8Block` tile.
    public static let fp8Block = 128
    /// FP4 weights: one scale per `fp4Group` consecutive inputs of a row.
    public static let fp4Group = 32

    /// Names a scale companion of weight `name` may have: `x.weight` → `x.scale`, `x.weight_scale_inv`.
    public static func scaleNames(for name: String) -> [String] {
        let stem = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
        return [stem + ".scale", name + "_scale_inv", stem + ".weight_scale_inv"].reduce(into: [String]()) {
            if !$0.contains($1) { $0.append($1) }
        }
    }

    /// The weight `view` as a matrix of logical shape `[rows, cols]`, with its scales.
    ///
    /// Dense F32/BF16/F16 must have shape `[rows, cols]`. F8_E4M3 must have shape
    /// `[rows, cols]` and a scale `[ceil(rows/128), ceil(cols/128)]`. I8/U8 is packed FP4 and
    /// must have shape `[rows, cols/2]` and a scale `[rows, cols/32]`.
    /// - Returns: the matrix and the name of the scale tensor it uses (nil for dense).
    /// - Throws: `shapeMismatch`, `dtypeMismatch`, `badPacking`, `missingScale` or `badScale`,
    ///   naming the tensor and its file.
    public func matrix(_ view: TensorView, rows: Int, cols: Int) throws -> (matrix: WeightMatrix, scaleName: String?) {
        let name = view.name
        let path = view.file.path
        switch view.dtype {
        case .f32, .bf16, .f16:
            guard view.shape == [rows, cols] else {
                throw CheckpointError.shapeMismatch(tensor: name, path: path, expected: [rows, cols], actual: view.shape)
            }
            return (try view.matrix(), nil)
        case .f8e4m3:
            guard view.shape == [rows, cols] else {
                throw CheckpointError.shapeMismatch(tensor: name, path: path, expected: [rows, cols], actual: view.shape)
            }
            let b = Self.fp8Block
            let (scales, scaleName) = try scaleGrid(
                for: view, shape: [(rows + b - 1) / b, (cols + b - 1) / b], blockRows: b, blockCols: b)
            return (WeightMatrix(rows: rows, cols: cols, type: .f8e4m3, base: view.pointer, scales: scales, owner: view.file), scaleName)
        case .i8, .u8:
            guard view.shape.count == 2, view.shape[0] == rows else {
                throw CheckpointError.shapeMismatch(tensor: name, path: path, expected: [rows, cols / 2], actual: view.shape)
            }
            guard cols % 2 == 0, view.shape[1] * 2 == cols else {
                throw CheckpointError.badPacking(
                    tensor: name, path: path,
                    reason: "stored width \(view.shape[1]) bytes holds \(view.shape[1] * 2) FP4 values per row, the model needs \(cols)")
            }
            let g = Self.fp4Group
            guard cols % g == 0 else {
                throw CheckpointError.badPacking(tensor: name, path: path, reason: "logical width \(cols) is not a multiple of the \(g)-value scale group")
            }
            let (scales, scaleName) = try scaleGrid(for: view, shape: [rows, cols / g], blockRows: 1, blockCols: g)
            return (WeightMatrix(rows: rows, cols: cols, type: .fp4e2m1, base: view.pointer, scales: scales, owner: view.file), scaleName)
        default:
            throw CheckpointError.dtypeMismatch(tensor: name, path: path, expected: "F32, BF16, F16, F8_E4M3 or I8 (packed FP4)", actual: view.dtype.rawValue)
        }
    }

    /// Finds, checks and wraps the scale companion of `view`.
    private func scaleGrid(for view: TensorView, shape: [Int], blockRows: Int, blockCols: Int) throws -> (BlockScales, String) {
        let candidates = Self.scaleNames(for: view.name)
        guard let scaleName = candidates.first(where: contains), let s = self.view(scaleName) else {
            throw CheckpointError.missingScale(tensor: view.name, path: view.file.path, expected: candidates)
        }
        guard s.shape == shape, shape.allSatisfy({ $0 > 0 }) else {
            throw CheckpointError.badScale(
                tensor: scaleName, path: s.file.path, reason: "has shape \(s.shape), expected \(shape) for weight '\(view.name)' \(view.shape)")
        }
        let count = s.info.elementCount
        // NOTE: checked on a pread copy: scanning the mapping would make every scale page (and
        // its fault-around neighbours among the weights) resident before any is needed.
        switch s.dtype {
        case .f8e8m0:
            let bytes = try s.file.read(s.info)
            if let i = bytes.firstIndex(of: 0xFF) {
                throw CheckpointError.badScale(tensor: scaleName, path: s.file.path, reason: "element \(i) is 0xFF (E8M0 NaN)")
            }
            return (BlockScales(base: s.pointer, isFloat32: false, stride: shape[1], blockRows: blockRows, blockCols: blockCols), scaleName)
        case .f32:
            let bytes = try s.file.read(s.info)
            for i in 0..<count {
                let v = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
                guard v.isFinite, v > 0 else {
                    throw CheckpointError.badScale(tensor: scaleName, path: s.file.path, reason: "element \(i) is \(v), not a finite positive scale")
                }
            }
            return (BlockScales(base: s.pointer, isFloat32: true, stride: shape[1], blockRows: blockRows, blockCols: blockCols), scaleName)
        default:
            throw CheckpointError.badScale(tensor: scaleName, path: s.file.path, reason: "dtype \(s.dtype.rawValue), expected F8_E8M0 or F32")
        }
    }
}
