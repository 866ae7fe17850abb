// TensorDType.swift: the dtypes safetensors files name, with their element sizes.
import Tensors

/// A safetensors dtype string, e.g. "BF16" or "F8_E4M3".
public enum TensorDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2", f8e8m0 = "F8_E8M0"

    /// Bytes per element.
    public var byteCount: Int {
        switch self {
        case .f64, .i64, .u64: 8
        case .f32, .i32, .u32: 4
        case .f16, .bf16, .i16, .u16: 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2, .f8e8m0: 1
        }
    }

    /// The matrix-kernel format with the same layout, if the kernels read it directly.
    public var storageType: StorageType? {
        switch self {
        case .f32: .f32
        case .bf16: .bf16
        case .f16: .f16
        case .f8e4m3: .f8e4m3
        default: nil
        }
    }
}
