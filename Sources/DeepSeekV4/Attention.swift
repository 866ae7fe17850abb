// Attention.swift: the V4 attention block for a chunk of tokens of one sequence (spec §4, §7).
//
// Low-rank query path with per-head RMSNorm, one shared K=V head, partial RoPE, a sliding
// window of `sliding_window` tokens including the query, compressed entries (all visible
// ones for HCA, the indexer's top-k for CSA), a per-head sink in the softmax denominator,
// inverse RoPE on the output, and the grouped low-rank output projection.
// Port of transformers' DeepseekV4Attention + eager_attention_forward.
import Foundation
import Numerics

enum Attention {
    /// Runs the attention block over `T` tokens at positions `p0..<p0+T`.
    /// - Parameters:
    ///   - h: normed block input `[T, D]`.
    /// - Returns: the block output `[T, D]`.
    static func forward(
        _ w: AttentionWeights, kind: AttentionKind, h: [Float], tokenCount T: Int, startPosition p0: Int,
        state: inout LayerState, rope: RotaryEmbedding, config c: DeepSeekV4Config
    ) -> [Float] {
        let H = c.headCount
        let d = c.headDim
        let eps = c.rmsNormEps
        let W = c.slidingWindow

        // Query path: qr = RMSNorm(wq_a·h); q = wq_b·qr per head, unweighted RMSNorm, RoPE.
        var qr = w.wqA.apply(h, tokenCount: T)
        qr.withUnsafeMutableBufferPointer { p in
            w.qNorm.withUnsafeBufferPointer { n in
                for t in 0..<T { VectorOps.rmsNorm(p.baseAddress! + t * c.qLoraRank, count: c.qLoraRank, weight: n.baseAddress!, eps: eps) }
            }
        }
        var q = w.wqB.apply(qr, tokenCount: T)
        q.withUnsafeMutableBufferPointer { p in
            for t in 0..<T {
                for hd in 0..<H {
                    let v = p.baseAddress! + (t * H + hd) * d
                    VectorOps.rmsNorm(v, count: d, weight: nil, eps: eps)
                    rope.apply(v, count: d, position: p0 + t)
                }
            }
        }
        // Shared K=V head.
        var kv = w.wkv.apply(h, tokenCount: T)
        kv.withUnsafeMutableBufferPointer { p in
            w.kvNorm.withUnsafeBufferPointer { n in
                for t in 0..<T {
                    VectorOps.rmsNorm(p.baseAddress! + t * d, count: d, weight: n.baseAddress!, eps: eps)
                    rope.apply(p.baseAddress! + t * d, count: d, position: p0 + t)
                }
            }
        }

        // Compressed entries closed by this chunk (visible by position below).
        if let cw = w.compressor {
            Compressor.append(cw, state: &state.compressor!, h: h, tokenCount: T, startPosition: p0, rope: rope, eps: eps)
        }
        var selected: [[Int]] = []
        if kind == .csa, let iw = w.indexer {
            Compressor.append(iw.compressor, state: &state.indexer!, h: h, tokenCount: T, startPosition: p0, rope: rope, eps: eps)
            selected = Indexer.select(iw, qr: qr, h: h, tokenCount: T, startPosition: p0, keys: state.indexer!, rope: rope, config: c)
        }

        // Attention over window + compressed entries, one softmax with the sink.
        var o = [Float](repeating: 0, count: T * H * d)
        let scale = 1 / Float(d).squareRoot()
        let entries = state.compressor?.entries ?? []
        let m = state.compressor?.ratio ?? 1
        state.window.withUnsafeBufferPointer { ring in
            kv.withUnsafeBufferPointer { kvp in
                entries.withUnsafeBufferPointer { ent in
                    q.withUnsafeBufferPointer { qp in
                        o.withUnsafeMutableBufferPointer { op in
                            var keys: [UnsafePointer<Float>] = []
                            var logits: [Float] = []
                            for t in 0..<T {
                                let P = p0 + t
                                keys.removeAll(keepingCapacity: true)
                                for pos in max(0, P - W + 1)...P {
                                    keys.append(pos >= p0 ? kvp.baseAddress! + (pos - p0) * d : ring.baseAddress! + (pos % W) * d)
                                }
                                switch kind {
                                case .sliding: break
                                case .hca:
                                    let visible = (P + 1) / m
                                    for e in 0..<visible { keys.append(ent.baseAddress! + e * d) }
                                case .csa:
                                    for e in selected[t] { keys.append(ent.baseAddress! + e * d) }
                                }
                                logits = [Float](repeating: 0, count: keys.count)
                                for hd in 0..<H {
                                    let qv = qp.baseAddress! + (t * H + hd) * d
                                    let sink = w.sinks[hd]
                                    var mx = sink
                                    for (i, k) in keys.enumerated() {
                                        let l = dot(qv, k, d) * scale
                                        logits[i] = l
                                        mx = max(mx, l)
                                    }
                                    var denom = exp(sink - mx)
                                    for i in 0..<keys.count {
                                        logits[i] = exp(logits[i] - mx)
                                        denom += logits[i]
                                    }
                                    let out = op.baseAddress! + (t * H + hd) * d
                                    for (i, k) in keys.enumerated() { axpy(logits[i] / denom, k, out, d) }
                                    rope.apply(out, count: d, position: P, inverse: true)
                                }
                            }
                        }
                    }
                }
            }
        }

        // Remember the last `W` kv vectors.
        for t in max(0, T - W)..<T {
            let slot = (p0 + t) % W
            for k in 0..<d { state.window[slot * d + k] = kv[t * d + k] }
        }

        // Grouped output projection: z_g = wo_a[g] · o_g, out = wo_b · z.
        let G = c.outputGroups
        let groupIn = H * d / G
        let r = c.outputLoraRank
        var z = [Float](repeating: 0, count: T * G * r)
        o.withUnsafeBufferPointer { op in
            z.withUnsafeMutableBufferPointer { zp in
                for g in 0..<G {
                    w.woA.rows((g * r)..<((g + 1) * r)).apply(
                        op.baseAddress! + g * groupIn, ldx: H * d, tokenCount: T, into: zp.baseAddress! + g * r, ldy: G * r)
                }
            }
        }
        return w.woB.apply(z, tokenCount: T)
    }
}
