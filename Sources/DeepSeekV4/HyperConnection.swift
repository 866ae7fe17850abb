// HyperConnection.swift: manifold-constrained hyper-connections (mHC; transformers' modeling_deepseek_v4.py, DeepseekV4HyperConnection).
//
// Per token, N residual streams X [N, D] are collapsed by `pre` weights into the block input,
// and the block output is expanded back by `post` plus a mixing matrix C projected by
// Sinkhorn-Knopp onto (nearly) doubly-stochastic matrices: X'_j = post_j·a + Σ_i C[i][j]·X_i.
// Port of transformers' DeepseekV4HyperConnection / DeepseekV4HyperHead (fp32 throughout).
import CKernels
import Foundation
import Tensors

/// Mixing weights of T tokens, flat (no arrays per token in the hot path): pre `[T, N]`,
/// post `[T, N]`, comb `[T, N, N]`.
struct HyperMixes {
    var pre: [Float]
    var post: [Float]
    var comb: [Float]
}

enum HyperConnection {
    /// mixes[t] = fn · RMSNorm(flatten(X[t])) for every token; X is `[T, N·D]`, result `[T, rows(fn)]`.
    static func mixes(_ fn: WeightMatrix, streams X: [Float], tokenCount T: Int, eps: Float) -> [Float] {
        let width = fn.cols
        let normed = [Float](unsafeUninitializedCapacity: T * width) { p, n in
            X.withUnsafeBufferPointer { ck_rmsnorm_rows_to($0.baseAddress!, width, T, width, nil, eps, p.baseAddress!, width) }
            n = T * width
        }
        return fn.apply(normed, tokenCount: T)
    }

    /// Pre/post/comb of every token for a decoder block (DeepseekV4HyperConnection.forward).
    static func blockMix(
        _ w: HyperConnectionWeights, streams X: [Float], tokenCount T: Int, config c: DeepSeekV4Config
    ) -> HyperMixes {
        let N = c.hcMult
        let m = mixes(w.fn, streams: X, tokenCount: T, eps: c.rmsNormEps)
        let mix = c.hcMixCount
        let eps = c.hcEps
        var pre = [Float](repeating: 0, count: T * N), post = pre
        var comb = [Float](repeating: 0, count: T * N * N)
        for t in 0..<T {
            let row = t * mix, p = t * N, q = t * N * N
            for i in 0..<N {
                pre[p + i] = VectorOps.sigmoid(m[row + i] * w.scale[0] + w.base[i]) + eps
                post[p + i] = 2 * VectorOps.sigmoid(m[row + N + i] * w.scale[1] + w.base[N + i])
            }
            // Row softmax of the comb logits, then + eps.
            for i in 0..<N {
                var mx = -Float.infinity
                for j in 0..<N {
                    let v = m[row + 2 * N + i * N + j] * w.scale[2] + w.base[2 * N + i * N + j]
                    comb[q + i * N + j] = v
                    mx = max(mx, v)
                }
                var sum: Float = 0
                for j in 0..<N {
                    comb[q + i * N + j] = exp(comb[q + i * N + j] - mx)
                    sum += comb[q + i * N + j]
                }
                for j in 0..<N { comb[q + i * N + j] = comb[q + i * N + j] / sum + eps }
            }
        }
        // Sinkhorn for every token at once (16 matrices per vector in the kernel).
        ck_sinkhorn(&comb, T, N, Int32(c.hcSinkhornIterations), eps)
        return HyperMixes(pre: pre, post: post, comb: comb)
    }

    /// u[t] = Σ_i pre[t, i] · X[t, i] (pre `[T, N]`); result `[T, D]`. Tokens are spread over the kernel threads.
    static func collapse(streams X: [Float], weights pre: [Float], tokenCount T: Int, hidden D: Int, streamCount N: Int) -> [Float] {
        var u = [Float](unsafeUninitializedCapacity: T * D) { _, count in count = T * D }  // all written below
        X.withUnsafeBufferPointer { x in
            pre.withUnsafeBufferPointer { w in
                u.withUnsafeMutableBufferPointer { up in
                    let xb = x.baseAddress!, wb = w.baseAddress!, ub = up.baseAddress!
                    KernelThreads.parallelFor(min(T, 64)) { chunk in
                        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: N) { src in
                            for t in stride(from: chunk, to: T, by: min(T, 64)) {
                                for i in 0..<N { src[i] = UnsafePointer(xb + (t * N + i) * D) }
                                ck_weighted_sum_f32(src.baseAddress!, wb + t * N, N, D, ub + t * D)
                            }
                        }
                    }
                }
            }
        }
        return u
    }

    /// X'[t, j] = post_j · a[t] + Σ_i comb[i][j] · X[t, i] (DeepseekV4HyperConnection; note Cᵀ).
    static func expand(streams X: inout [Float], blockOutput a: [Float], mix: HyperMixes, tokenCount T: Int, hidden D: Int, streamCount N: Int) {
        // Every element is written below (ck_weighted_sum_f32), so no zeroing first.
        var next = [Float](unsafeUninitializedCapacity: X.count) { _, count in count = X.count }
        X.withUnsafeBufferPointer { x in
            a.withUnsafeBufferPointer { ap in
                next.withUnsafeMutableBufferPointer { np in
                    let xb = x.baseAddress!, ab = ap.baseAddress!, nb = np.baseAddress!
                    let post = mix.post, comb = mix.comb
                    KernelThreads.parallelFor(min(T, 64)) { chunk in
                        // out_j = post_j · a + Σ_i comb[i][j] · X_i, terms in that order (ck_weighted_sum_f32).
                        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: N + 1) { src in
                            withUnsafeTemporaryAllocation(of: Float.self, capacity: N + 1) { coef in
                                for t in stride(from: chunk, to: T, by: min(T, 64)) {
                                    src[0] = ab + t * D
                                    for i in 0..<N { src[i + 1] = UnsafePointer(xb + (t * N + i) * D) }
                                    for j in 0..<N {
                                        coef[0] = post[t * N + j]
                                        for i in 0..<N { coef[i + 1] = comb[t * N * N + i * N + j] }
                                        ck_weighted_sum_f32(src.baseAddress!, coef.baseAddress!, N + 1, D, nb + (t * N + j) * D)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        X = next
    }
}
