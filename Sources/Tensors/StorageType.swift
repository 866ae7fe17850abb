// StorageType.swift: the number formats in which weights are stored and read in place.
//
// Convention for every tensor-valued property in dsv4: shapes are row-major, outermost
// first, e.g. `[tokenCount, hiddenSize]`.
import CKernels

/// The element format of a stored tensor that the matrix kernels can read directly.
public enum StorageType: String, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = "F32"
    case bf16 = "BF16"
    case f16 = "F16"
    /// OCP FP8 E4M3FN, one byte per value; used with block scales (OCP 8-bit floating point spec, E4M3FN).
    case f8e4m3 = "F8_E4M3"
    /// FP4 E2M1, two values per byte (low nibble first); used with per-32 scales.
    case fp4e2m1 = "FP4_E2M1"

    /// Bytes one row of `count` values occupies (FP4: two values per byte, rounded up).
    public func byteCount(elements count: Int) -> Int {
        switch self {
        case .f32: 4 * count
        case .bf16, .f16: 2 * count
        case .f8e4m3: count
        case .fp4e2m1: (count + 1) / 2
        }
    }

    /// True for the block-quantized formats that carry scales.
    public var isQuantized: Bool { self == .f8e4m3 || self == .fp4e2m1 }

    /// The formats that need no scales (dense floats).
    public static let denseTypes: [StorageType] = [.f32, .bf16, .f16]

    public var description: String { rawValue }

    /// The C kernels' name for this format.
    public var kernelType: ck_dtype {
        switch self {
        case .f32: CK_DTYPE_F32
        case .bf16: CK_DTYPE_BF16
        case .f16: CK_DTYPE_F16
        case .f8e4m3: CK_DTYPE_F8E4M3
        case .fp4e2m1: CK_DTYPE_FP4E2M1
        }
    }
}

/// The block scales of a quantized matrix: `W[n][k] = decode(Wq[n][k]) · scale[(rowOffset + n) / blockRows][k / blockCols]`.
public struct BlockScales: @unchecked Sendable {
    /// The scale grid `[ceil(rows / blockRows), stride]`, E8M0 bytes or float32.
    public let base: UnsafeRawPointer
    /// True for float32 scales (some converters write them), false for E8M0.
    public let isFloat32: Bool
    /// Scales per grid row.
    public let stride: Int
    /// Weight rows per scale row (128 for FP8, 1 for FP4).
    public let blockRows: Int
    /// Weight columns per scale (128 for FP8, 32 for FP4).
    public let blockCols: Int
    /// Row 0 of this matrix within the scaled tensor (non-zero for row slices).
    public let rowOffset: Int

    public init(base: UnsafeRawPointer, isFloat32: Bool, stride: Int, blockRows: Int, blockCols: Int, rowOffset: Int = 0) {
        precondition(blockRows > 0 && blockCols > 0 && stride > 0)
        self.base = base
        self.isFloat32 = isFloat32
        self.stride = stride
        self.blockRows = blockRows
        self.blockCols = blockCols
        self.rowOffset = rowOffset
    }

    /// The same grid seen from `rows` further down.
    func offset(by rows: Int) -> BlockScales {
        BlockScales(base: base, isFloat32: isFloat32, stride: stride, blockRows: blockRows, blockCols: blockCols, rowOffset: rowOffset + rows)
    }

    var kernel: ck_scales {
        ck_scales(data: base, f32: isFloat32 ? 1 : 0, ld: stride, block_rows: blockRows, block_cols: blockCols, row0: rowOffset)
    }
}

/// Single-value decoders of the quantized formats (the kernels' reference definitions).
public enum QuantizedFormats {
    /// FP8 E4M3FN byte to float (0x7F / 0xFF are NaN).
    public static func e4m3(_ byte: UInt8) -> Float { ck_e4m3_to_f32(byte) }
    /// E8M0 scale byte to 2^(b−127) (0xFF is NaN).
    public static func e8m0(_ byte: UInt8) -> Float { ck_e8m0_to_f32(byte) }
    /// E2M1 nibble (low 4 bits) to float.
    public static func e2m1(_ nibble: UInt8) -> Float { ck_e2m1_to_f32(nibble & 15) }
}
