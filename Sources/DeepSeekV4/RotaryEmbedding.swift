// RotaryEmbedding.swift: partial, interleaved RoPE on the trailing dims (transformers' modeling_deepseek_v4.py, DeepseekV4RotaryEmbedding).
//
// Sliding-only layers use θ = rope_theta without scaling; CSA/HCA layers use
// compress_rope_theta with YaRN, for q, kv, compressed entries, the output de-rotation and
// the indexer. Angles are fp32 products pos·f, as in both references.
import CKernels
import Foundation

struct RotaryEmbedding: Sendable {
    /// Rotated dims (even), at the end of each vector.
    let dim: Int
    /// Inverse frequencies, `[dim/2]`.
    let inverseFrequencies: [Float]
    /// Multiplies cos and sin (1 for V4).
    let attentionFactor: Float

    init(dim: Int, parameters p: RopeParameters) {
        self.dim = dim
        attentionFactor = Float(p.attentionFactor)
        let half = dim / 2
        // transformers: base ** (arange(0, dim, 2) / dim) in fp32.
        let base = Float(p.theta)
        let posFreqs = (0..<half).map { powf(base, Float(2 * $0) / Float(dim)) }
        let extrapolation = posFreqs.map { 1 / $0 }
        guard p.type == "yarn" else {
            inverseFrequencies = extrapolation
            return
        }
        let factor = Float(p.factor)
        let interpolation = posFreqs.map { 1 / (factor * $0) }
        func correctionDim(_ rotations: Double) -> Double {
            Double(dim) * log(Double(p.originalMaxPositionEmbeddings) / (rotations * 2 * Double.pi)) / (2 * log(p.theta))
        }
        var low = correctionDim(p.betaFast)
        var high = correctionDim(p.betaSlow)
        if p.truncate {
            low = floor(low)
            high = ceil(high)
        }
        low = max(low, 0)
        high = min(high, Double(dim - 1))
        if low == high { high += 0.001 }
        inverseFrequencies = (0..<half).map { i in
            let ramp = min(max((Float(i) - Float(low)) / (Float(high) - Float(low)), 0), 1)
            let extrapolationFactor = 1 - ramp
            return interpolation[i] * (1 - extrapolationFactor) + extrapolation[i] * extrapolationFactor
        }
    }

    /// Rotates the last `dim` values of `x` (length `count`) to `position`; `inverse` negates sin.
    @inline(__always)
    func apply(_ x: UnsafeMutablePointer<Float>, count: Int, position: Int, inverse: Bool = false) {
        apply(x, heads: 1, count: count, position: position, inverse: inverse)
    }

    /// Rotates `heads` consecutive vectors of `count` values each (one set of angles).
    @inline(__always)
    func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, count: Int, position: Int, inverse: Bool = false) {
        inverseFrequencies.withUnsafeBufferPointer { f in
            ck_rope(x, heads, count, count, dim, f.baseAddress!, Float(position), attentionFactor, inverse ? 1 : 0)
        }
    }
}
