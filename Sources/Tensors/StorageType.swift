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

    /// Bytes per element.
    public var byteCount: Int {
        switch self {
        case .f32: 4
        case .bf16, .f16: 2
        }
    }

    public var description: String { rawValue }

    var kernelType: ck_dtype {
        switch self {
        case .f32: CK_DTYPE_F32
        case .bf16: CK_DTYPE_BF16
        case .f16: CK_DTYPE_F16
        }
    }
}
