// VectorOps.swift: small elementwise operations of the model, on fp32 rows.
import CKernels
import Foundation

public enum VectorOps {
    /// In place: x ← w ⊙ x / sqrt(mean(x²) + eps); `weight` nil gives the unweighted norm.
    @inline(__always)
    public static func rmsNorm(_ x: UnsafeMutablePointer<Float>, count n: Int, weight: UnsafePointer<Float>?, eps: Float) {
        ck_rmsnorm(x, n, weight, eps)
    }

    /// rmsNorm on `rows` rows of `count` values, `stride` apart (split over the kernel threads
    /// when large; each row's arithmetic is rmsNorm's).
    @inline(__always)
    public static func rmsNormRows(
        _ x: UnsafeMutablePointer<Float>, rows: Int, count n: Int, stride: Int, weight: UnsafePointer<Float>?, eps: Float
    ) {
        ck_rmsnorm_rows(x, rows, n, stride, weight, eps)
    }

    /// log(1 + eˣ) with PyTorch's threshold (x > 20 returns x).
    @inline(__always)
    public static func softplus(_ x: Float) -> Float { x > 20 ? x : log1p(exp(x)) }

    /// x·σ(x).
    @inline(__always)
    public static func silu(_ x: Float) -> Float { x / (1 + exp(-x)) }

    /// σ(x).
    @inline(__always)
    public static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }
}
