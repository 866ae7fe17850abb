// WeightMatrix.swift: a read-only [rows, cols] weight matrix that stays where it is stored
// (usually a memory-mapped checkpoint) and is applied as y = x · Wᵀ by the C kernels.
import CKernels

/// A weight matrix `[rows, cols]` in its stored format. The memory it points into must
/// outlive it; `owner` keeps that memory alive.
public struct WeightMatrix: @unchecked Sendable {
    /// Output features.
    public let rows: Int
    /// Input features.
    public let cols: Int
    public let type: StorageType
    /// First element of row 0.
    public let base: UnsafeRawPointer
    /// Block scales of a quantized matrix (nil: all scales 1).
    public let scales: BlockScales?
    /// Whatever owns `base` and the scales (a mapped file, an array box).
    public let owner: AnyObject?

    public init(rows: Int, cols: Int, type: StorageType, base: UnsafeRawPointer, scales: BlockScales? = nil, owner: AnyObject?) {
        self.rows = rows
        self.cols = cols
        self.type = type
        self.base = base
        self.scales = scales
        self.owner = owner
    }

    /// Bytes one stored row occupies.
    public var bytesPerRow: Int { type.byteCount(elements: cols) }

    /// An owned fp32 matrix (tests, generated weights). `values` is `[rows, cols]`.
    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(values.count == rows * cols, "values must hold rows*cols floats")
        let box = FloatBox(values)
        self.init(rows: rows, cols: cols, type: .f32, base: UnsafeRawPointer(box.pointer), owner: box)
    }

    /// Rows `range` of this matrix, as a matrix of its own (no copy). Block scales follow:
    /// the slice remembers its row offset within the scale grid, so a slice may start
    /// anywhere, also inside a 128-row FP8 block.
    public func rows(_ range: Range<Int>) -> WeightMatrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows)
        return WeightMatrix(
            rows: range.count, cols: cols, type: type,
            base: base + range.lowerBound * bytesPerRow, scales: scales?.offset(by: range.lowerBound), owner: owner)
    }

    /// Bytes the matrix occupies in storage (without scales).
    public var byteCount: Int { rows * bytesPerRow }

    /// Bytes of its block scales that its rows use (one scale row per `blockRows` weight rows).
    public var scaleByteCount: Int {
        guard let s = scales else { return 0 }
        let first = s.rowOffset / s.blockRows, last = (s.rowOffset + rows - 1) / s.blockRows
        return rows == 0 ? 0 : (last - first + 1) * s.stride * (s.isFloat32 ? 4 : 1)
    }

    /// Bytes a pass over the whole matrix reads: weights and scales.
    public var readBytes: Int { byteCount + scaleByteCount }

    /// y[t, n] = Σ_k x[t, k] · W[n, k] for `tokenCount` rows of x.
    /// - Parameters:
    ///   - x: `[tokenCount, ldx]`, the first `cols` values of each row are read.
    ///   - y: `[tokenCount, ldy]`, the first `rows` values of each row are written.
    public func apply(
        _ x: UnsafePointer<Float>, ldx: Int, tokenCount: Int, into y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        KernelThreads.startIfNeeded()
        if var s = scales?.kernel {
            ck_matmul_scaled_auto(x, ldx, tokenCount, cols, base, type.kernelType, &s, rows, y, ldy)
        } else if type == .f8e4m3 || type == .fp4e2m1 {
            ck_matmul_scaled_auto(x, ldx, tokenCount, cols, base, type.kernelType, nil, rows, y, ldy)
        } else {
            ck_matmul_auto(x, ldx, tokenCount, cols, base, type.kernelType, rows, y, ldy)
        }
    }

    /// Convenience: y = x · Wᵀ for x `[tokenCount, cols]`, returning `[tokenCount, rows]`.
    public func apply(_ x: [Float], tokenCount: Int) -> [Float] {
        precondition(x.count == tokenCount * cols, "input must be [tokenCount, cols]")
        var y = [Float](repeating: 0, count: tokenCount * rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                apply(xp.baseAddress!, ldx: cols, tokenCount: tokenCount, into: yp.baseAddress!, ldy: rows)
            }
        }
        return y
    }

    /// Row `r` decoded to fp32.
    public func row(_ r: Int) -> [Float] {
        precondition(r >= 0 && r < rows)
        var out = [Float](repeating: 0, count: cols)
        decodeRows(r, 1, into: &out)
        return out
    }

    /// The whole matrix decoded to fp32, `[rows, cols]`.
    public func toFloat() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        decodeRows(0, rows, into: &out)
        return out
    }

    private func decodeRows(_ first: Int, _ count: Int, into out: inout [Float]) {
        out.withUnsafeMutableBufferPointer { o in
            if var s = scales?.kernel {
                ck_decode_rows(base, type.kernelType, cols, &s, first, count, o.baseAddress!)
            } else {
                ck_decode_rows(base, type.kernelType, cols, nil, first, count, o.baseAddress!)
            }
        }
    }
}

/// Heap storage for an owned float array with a stable address.
public final class FloatBox: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(_ values: [Float]) {
        count = values.count
        pointer = .allocate(capacity: max(values.count, 1))
        values.withUnsafeBufferPointer { pointer.initialize(from: $0.baseAddress!, count: values.count) }
    }

    deinit { pointer.deallocate() }
}

/// One product of a wave: y = x · Wᵀ for `tokenCount` rows (see `WeightMatrix.applyAll`).
public struct MatrixProduct {
    public let matrix: WeightMatrix
    public let x: UnsafePointer<Float>
    public let ldx: Int
    public let tokenCount: Int
    public let y: UnsafeMutablePointer<Float>
    public let ldy: Int

    public init(_ matrix: WeightMatrix, x: UnsafePointer<Float>, ldx: Int, tokenCount: Int, y: UnsafeMutablePointer<Float>, ldy: Int) {
        self.matrix = matrix
        self.x = x
        self.ldx = ldx
        self.tokenCount = tokenCount
        self.y = y
        self.ldy = ldy
    }
}

extension WeightMatrix {
    /// Runs independent products in one job over the kernel threads: their row blocks are
    /// interleaved as tasks, so small products (decode's experts and projections) keep every
    /// thread streaming weights. Bit-identical to calling `apply` on each. No product may
    /// write memory that another reads.
    public static func applyAll(_ products: [MatrixProduct]) {
        guard !products.isEmpty else { return }
        KernelThreads.startIfNeeded()
        var scales = products.map { $0.matrix.scales?.kernel ?? ck_scales() }
        scales.withUnsafeMutableBufferPointer { sp in
            let items = products.enumerated().map { i, p in
                ck_product(
                    x: p.x, ldx: p.ldx, T: p.tokenCount, K: p.matrix.cols, w: p.matrix.base, dtype: p.matrix.type.kernelType,
                    scales: p.matrix.scales == nil ? nil : UnsafePointer(sp.baseAddress! + i), N: p.matrix.rows, y: p.y, ldy: p.ldy)
            }
            items.withUnsafeBufferPointer { ck_matmul_many($0.baseAddress!, $0.count) }
        }
        withExtendedLifetime(products) {}
    }
}
