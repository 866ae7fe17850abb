// Compressor.swift: the token-level KV compressor of CSA (overlapping, ratio 4) and HCA
// (non-overlapping, ratio 128) layers, and of the Lightning Indexer (spec §5).
//
// Each token p contributes C_p = wkv·h_p and Z_p = wgate·h_p + ape[p mod m]. When a window
// closes, each channel is a softmax-weighted sum over the window's slots (CSA: the previous
// window's series a plus the own window's series b), then RMSNorm and RoPE at position w·m.
// Port of transformers' DeepseekV4{HCA,CSA}Compressor / DeepseekV4Indexer pooling, written as
// the per-token state machine of DeepSeek's reference so any chunking gives the same entries.
import Foundation
import Numerics

enum Compressor {
    /// Feeds `tokenCount` tokens starting at `startPosition` through the compressor; appends
    /// any entries whose windows close. `h` is the normed block input `[T, D]`.
    static func append(
        _ w: CompressorWeights, state s: inout CompressorState, h: [Float], tokenCount T: Int,
        startPosition p0: Int, rope: RotaryEmbedding, eps: Float
    ) {
        let width = s.width
        let c = w.entryWidth
        let m = w.ratio
        let kv = w.wkv.apply(h, tokenCount: T)
        let gate = w.wgate.apply(h, tokenCount: T)
        for t in 0..<T {
            let p = p0 + t
            let j = p % m
            let slot = s.overlapping ? m + j : j
            for k in 0..<width {
                s.kv[slot * width + k] = kv[t * width + k]
                s.score[slot * width + k] = gate[t * width + k] + w.ape[j * width + k]
            }
            guard (p + 1) % m == 0 else { continue }
            // Pool the closed window into entry w = (p+1)/m − 1.
            var entry = [Float](repeating: 0, count: c)
            let slotCount = s.overlapping ? 2 * m : m
            for k in 0..<c {
                // Slot i reads series a (cols 0..<c) for previous-window slots, b (c..<2c) for own ones.
                var mx = -Float.infinity
                for i in 0..<slotCount {
                    let col = (s.overlapping && i >= m) ? c + k : k
                    mx = max(mx, s.score[i * width + col])
                }
                var denom: Float = 0
                var acc: Float = 0
                for i in 0..<slotCount {
                    let col = (s.overlapping && i >= m) ? c + k : k
                    let sc = s.score[i * width + col]
                    if sc == -.infinity { continue }
                    let e = exp(sc - mx)
                    denom += e
                    acc += e * s.kv[i * width + col]
                }
                entry[k] = acc / denom
            }
            entry.withUnsafeMutableBufferPointer { e in
                w.norm.withUnsafeBufferPointer { n in
                    VectorOps.rmsNorm(e.baseAddress!, count: c, weight: n.baseAddress!, eps: eps)
                }
                rope.apply(e.baseAddress!, count: c, position: s.entryCount * m)
            }
            s.entries.append(contentsOf: entry)
            s.entryCount += 1
            if s.overlapping {
                // The closed window becomes the previous one.
                for i in 0..<m {
                    for k in 0..<width {
                        s.kv[i * width + k] = s.kv[(m + i) * width + k]
                        s.score[i * width + k] = s.score[(m + i) * width + k]
                    }
                }
            }
        }
    }
}
