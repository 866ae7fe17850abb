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

    /// Pre/post/comb of every token for a decoder block (DeepseekV4HyperConnection.forward):
    /// the unfused form, which `step` computes a chunk of tokens at a time with the same bits.
    static func blockMix(
        _ w: HyperConnectionWeights, streams X: [Float], tokenCount T: Int, config c: DeepSeekV4Config
    ) -> HyperMixes {
        let N = c.hcMult
        let m = mixes(w.fn, streams: X, tokenCount: T, eps: c.rmsNormEps)
        var pre = [Float](repeating: 0, count: T * N), post = pre
        var comb = [Float](repeating: 0, count: T * N * N)
        pre.withUnsafeMutableBufferPointer { p in
            post.withUnsafeMutableBufferPointer { q in
                comb.withUnsafeMutableBufferPointer { r in
                    m.withUnsafeBufferPointer { mp in
                        mixWeights(w, m: mp.baseAddress!, firstRow: 0, tokens: 0..<T, config: c, pre: p.baseAddress!, post: q.baseAddress!, comb: r.baseAddress!)
                    }
                }
            }
        }
        return HyperMixes(pre: pre, post: post, comb: comb)
    }

    /// Pre, post and the Sinkhorn-projected comb of `tokens` from their mix logits `m`
    /// (`hcMixCount` per token, row 0 for token `firstRow`), written at the tokens' places in
    /// the flat arrays.
    private static func mixWeights(
        _ w: HyperConnectionWeights, m: UnsafePointer<Float>, firstRow: Int, tokens: Range<Int>, config c: DeepSeekV4Config,
        pre: UnsafeMutablePointer<Float>, post: UnsafeMutablePointer<Float>, comb: UnsafeMutablePointer<Float>
    ) {
        let N = c.hcMult, mix = c.hcMixCount, eps = c.hcEps
        for t in tokens {
            let row = (t - firstRow) * mix, p = t * N, q = t * N * N
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
        // Sinkhorn for these tokens at once (16 matrices per vector, masked for fewer: a
        // matrix's result does not depend on its neighbours).
        ck_sinkhorn(comb + tokens.lowerBound * N * N, tokens.count, N, Int32(c.hcSinkhornIterations), eps)
    }

    /// u[t] = Σ_i pre[t, i] · X[t, i] (pre `[T, N]`); result `[T, D]`. Tokens are spread over the kernel threads.
    static func collapse(streams X: [Float], weights pre: [Float], tokenCount T: Int, hidden D: Int, streamCount N: Int) -> [Float] {
        var u = [Float](unsafeUninitializedCapacity: T * D) { _, count in count = T * D }  // all written below
        X.withUnsafeBufferPointer { x in
            pre.withUnsafeBufferPointer { w in
                u.withUnsafeMutableBufferPointer { up in
                    let xb = x.baseAddress!, wb = w.baseAddress!, ub = up.baseAddress!
                    KernelThreads.parallelFor(min(T, 64)) { chunk in
                        for t in stride(from: chunk, to: T, by: min(T, 64)) { collapseToken(xb, pre: wb, t, D: D, N: N, into: ub) }
                    }
                }
            }
        }
        return u
    }

    /// Token t's collapse: u[t] = Σ_i pre[t, i] · X[t, i], terms in that order (ck_weighted_sum_f32).
    @inline(__always)
    private static func collapseToken(
        _ xb: UnsafePointer<Float>, pre: UnsafePointer<Float>, _ t: Int, D: Int, N: Int, into u: UnsafeMutablePointer<Float>
    ) {
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: N) { src in
            for i in 0..<N { src[i] = xb + (t * N + i) * D }
            ck_weighted_sum_f32(src.baseAddress!, pre + t * N, N, D, u + t * D)
        }
    }

    /// Token t's expand: X'[t, j] = post_j · a[t] + Σ_i comb[i][j] · X[t, i], terms in that
    /// order (ck_weighted_sum_f32); `next` receives X'.
    @inline(__always)
    private static func expandToken(
        _ xb: UnsafePointer<Float>, blockOutput ab: UnsafePointer<Float>, post: UnsafePointer<Float>, comb: UnsafePointer<Float>,
        _ t: Int, D: Int, N: Int, into next: UnsafeMutablePointer<Float>
    ) {
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: N + 1) { src in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: N + 1) { coef in
                src[0] = ab + t * D
                for i in 0..<N { src[i + 1] = xb + (t * N + i) * D }
                for j in 0..<N {
                    coef[0] = post[t * N + j]
                    for i in 0..<N { coef[i + 1] = comb[t * N * N + i * N + j] }
                    ck_weighted_sum_f32(src.baseAddress!, coef.baseAddress!, N + 1, D, next + (t * N + j) * D)
                }
            }
        }
    }

    /// X'[t, j] = post_j · a[t] + Σ_i comb[i][j] · X[t, i] (DeepseekV4HyperConnection; note Cᵀ).
    static func expand(streams X: inout [Float], blockOutput a: [Float], mix: HyperMixes, tokenCount T: Int, hidden D: Int, streamCount N: Int) {
        // Every element is written below, so no zeroing first.
        var next = [Float](unsafeUninitializedCapacity: X.count) { _, count in count = X.count }
        X.withUnsafeBufferPointer { x in
            a.withUnsafeBufferPointer { ap in
                mix.post.withUnsafeBufferPointer { post in
                    mix.comb.withUnsafeBufferPointer { comb in
                        next.withUnsafeMutableBufferPointer { np in
                            let xb = x.baseAddress!, ab = ap.baseAddress!, nb = np.baseAddress!, pb = post.baseAddress!, cb = comb.baseAddress!
                            KernelThreads.parallelFor(min(T, 64)) { chunk in
                                for t in stride(from: chunk, to: T, by: min(T, 64)) {
                                    expandToken(xb, blockOutput: ab, post: pb, comb: cb, t, D: D, N: N, into: nb)
                                }
                            }
                        }
                    }
                }
            }
        }
        X = next
    }

    /// Tokens per chunk of `step`: 32 tokens' streams (128 KB at N·D = 1,024) stay in L2
    /// between the expand, the norm, the mix product and the collapse.
    static let stepChunk = 32

    /// One boundary between blocks, fused: the expand of the block before (when `expanding`
    /// holds its output and mixes), then the next block's mixes (`blockMix`) and input
    /// (`collapse`), a chunk of tokens at a time over the kernel threads, so the streams are
    /// read once and written once per boundary instead of ~5 passes over `[T, N·D]`. Bit for
    /// bit the unfused `expand`, `blockMix`, `collapse`: every token's arithmetic is the same,
    /// and a row of the mix product does not depend on the rows beside it.
    static func step(
        streams X: inout [Float], expanding: (output: [Float], mix: HyperMixes)?, next w: HyperConnectionWeights,
        tokenCount T: Int, config c: DeepSeekV4Config
    ) -> (mix: HyperMixes, input: [Float]) {
        let N = c.hcMult, D = c.hiddenSize
        func uninitialized(_ n: Int) -> [Float] { [Float](unsafeUninitializedCapacity: n) { _, count in count = n } }
        // Every element of these is written below.
        var pre = uninitialized(T * N), post = uninitialized(T * N), comb = uninitialized(T * N * N), u = uninitialized(T * D)
        var next = uninitialized(expanding == nil ? 0 : X.count)
        let a = expanding?.output ?? [], before = expanding?.mix ?? HyperMixes(pre: [], post: [], comb: [])
        X.withUnsafeBufferPointer { x in
            a.withUnsafeBufferPointer { ap in
                before.post.withUnsafeBufferPointer { bp in
                    before.comb.withUnsafeBufferPointer { bc in
                        next.withUnsafeMutableBufferPointer { np in
                            pre.withUnsafeMutableBufferPointer { prep in
                                post.withUnsafeMutableBufferPointer { postp in
                                    comb.withUnsafeMutableBufferPointer { combp in
                                        u.withUnsafeMutableBufferPointer { up in
                                            let into = StepOutputs(
                                                streams: expanding == nil ? x.baseAddress! : UnsafePointer(np.baseAddress!),
                                                pre: prep.baseAddress!, post: postp.baseAddress!, comb: combp.baseAddress!, input: up.baseAddress!)
                                            let expand = expanding == nil ? nil
                                                : (x: x.baseAddress!, a: ap.baseAddress!, post: bp.baseAddress!, comb: bc.baseAddress!, next: np.baseAddress!)
                                            KernelThreads.parallelFor((T + stepChunk - 1) / stepChunk) { ci in
                                                let tokens = (ci * stepChunk)..<min(T, (ci + 1) * stepChunk)
                                                if let e = expand {
                                                    for t in tokens { expandToken(e.x, blockOutput: e.a, post: e.post, comb: e.comb, t, D: D, N: N, into: e.next) }
                                                }
                                                mixAndCollapse(w, tokens: tokens, config: c, into)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if expanding != nil { X = next }
        return (HyperMixes(pre: pre, post: post, comb: comb), u)
    }

    /// Where `step` reads the streams of the next block and writes its mixes and input.
    private struct StepOutputs {
        let streams: UnsafePointer<Float>
        let pre, post, comb, input: UnsafeMutablePointer<Float>
    }

    /// The next block's mixes and input for a chunk of tokens whose streams are in `o.streams`.
    private static func mixAndCollapse(_ w: HyperConnectionWeights, tokens: Range<Int>, config c: DeepSeekV4Config, _ o: StepOutputs) {
        let N = c.hcMult, D = c.hiddenSize, W = N * D, M = c.hcMixCount, n = tokens.count, t0 = tokens.lowerBound
        withUnsafeTemporaryAllocation(of: Float.self, capacity: n * W) { normed in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: n * M) { m in
                ck_rmsnorm_rows_to(o.streams + t0 * W, W, n, W, nil, c.rmsNormEps, normed.baseAddress!, W)
                // Called from a pool task, the product runs on this thread.
                w.fn.apply(normed.baseAddress!, ldx: W, tokenCount: n, into: m.baseAddress!, ldy: M)
                mixWeights(w, m: m.baseAddress!, firstRow: t0, tokens: tokens, config: c, pre: o.pre, post: o.post, comb: o.comb)
            }
        }
        for t in tokens { collapseToken(o.streams, pre: o.pre, t, D: D, N: N, into: o.input) }
    }
}
