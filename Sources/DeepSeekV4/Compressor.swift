// Compressor.swift: the token-level KV compressor of CSA (overlapping, ratio 4) and HCA
// (non-overlapping, ratio 128) layers, and of the Lightning Indexer (DeepSeek-V4 paper, "Compressed
// Sparse Attention" / "Heavily Compressed Attention"; transformers' modeling_deepseek_v4.py).
//
// Each token p contributes C_p = wkv·h_p and Z_p = wgate·h_p + ape[p mod m]. When a window
// closes, each channel is a softmax-weighted sum over the window's slots (CSA: the previous
// window's series a plus the own window's series b), then RMSNorm and RoPE at position w·m.
// Port of transformers' DeepseekV4{HCA,CSA}Compressor / DeepseekV4Indexer pooling, written as
// the per-token state machine of DeepSeek's reference so any chunking gives the same entries.
import CKernels
import Foundation
import Tensors

enum Compressor {
    /// Feeds `tokenCount` tokens starting at `startPosition` through the compressor and
    /// writes every entry whose window closes. `h` points at the normed block input `[T, D]`.
    static func append(
        _ w: CompressorWeights, view v: CompressorView, h: UnsafePointer<Float>, tokenCount T: Int,
        startPosition p0: Int, rope: RotaryEmbedding, eps: Float
    ) {
        let width = v.slots.width
        let c = w.entryWidth
        let m = w.ratio
        var kv = [Float](repeating: 0, count: T * width)
        var gate = [Float](repeating: 0, count: T * width)
        kv.withUnsafeMutableBufferPointer { kp in
            gate.withUnsafeMutableBufferPointer { gp in
                WeightMatrix.applyAll([
                    MatrixProduct(w.wkv, x: h, ldx: w.wkv.cols, tokenCount: T, y: kp.baseAddress!, ldy: width),
                    MatrixProduct(w.wgate, x: h, ldx: w.wgate.cols, tokenCount: T, y: gp.baseAddress!, ldy: width),
                ])
            }
        }
        let sKV = v.kv
        let sScore = v.score
        let slotCount = v.slots.slotCount
        // Entries not stored as plain floats (tiles, bf16, fp8) are pooled here, then stored.
        let inPlace = !v.slots.tiled && v.floatEntries
        let pooled = UnsafeMutableBufferPointer<Float>.allocate(capacity: c)
        defer { pooled.deallocate() }
        for t in 0..<T {
            let p = p0 + t
            let j = p % m
            let slot = w.overlapping ? m + j : j
            for k in 0..<width {
                sKV[slot * width + k] = kv[t * width + k]
                sScore[slot * width + k] = gate[t * width + k] + w.ape[j * width + k]
            }
            guard (p + 1) % m == 0 else { continue }
            // Pool the closed window into entry (p+1)/m − 1. Slot i reads series a (cols 0..<c)
            // for previous-window slots and series b (c..<2c) for its own.
            let index = (p + 1) / m - 1
            let entry = inPlace ? v.entry(index) : pooled.baseAddress!
            ck_compress_pool(sKV, sScore, slotCount, width, c, m, w.overlapping ? 1 : 0, entry)
            w.norm.withUnsafeBufferPointer { VectorOps.rmsNorm(entry, count: c, weight: $0.baseAddress!, eps: eps) }
            rope.apply(entry, count: c, position: index * m)
            if !inPlace { v.store(index, from: entry) }
            if w.overlapping {
                // The closed window becomes the previous one.
                (sKV).update(from: sKV + m * width, count: m * width)
                (sScore).update(from: sScore + m * width, count: m * width)
            }
        }
    }
}
