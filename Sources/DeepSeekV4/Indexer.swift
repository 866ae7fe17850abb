// Indexer.swift: the Lightning Indexer of CSA layers (spec §6): scores every visible
// compressed entry for each query and keeps the top-k.
//
// score(t, s) = Σ_h (wI_h · nh^-½) · ReLU(qI_h · K_s) · ihd^-½, with qI = wq_b·qr (RoPE'd)
// and wI = weights_proj·h. Port of transformers' DeepseekV4Indexer / DeepseekV4IndexerScorer.
import CKernels
import Tensors

enum Indexer {
    /// For each of the `T` queries of one sequence, the ids of the selected entries (any order).
    /// - Parameters:
    ///   - qr: `[T, qLora]` normed query latents; h: `[T, D]` normed block input.
    static func select(
        _ w: IndexerWeights, qr: UnsafePointer<Float>, h: UnsafePointer<Float>, tokenCount T: Int, startPosition p0: Int,
        keys: CompressorView, rope: RotaryEmbedding, config c: DeepSeekV4Config
    ) -> [[Int]] {
        let nh = c.indexHeadCount
        let ihd = c.indexHeadDim
        let m = keys.slots.ratio
        var qI = [Float](repeating: 0, count: T * nh * ihd)
        var weights = [Float](repeating: 0, count: T * nh)
        qI.withUnsafeMutableBufferPointer { qp in
            weights.withUnsafeMutableBufferPointer { wp in
                WeightMatrix.applyAll([
                    MatrixProduct(w.wqB, x: qr, ldx: c.qLoraRank, tokenCount: T, y: qp.baseAddress!, ldy: nh * ihd),
                    MatrixProduct(w.weightsProj, x: h, ldx: c.hiddenSize, tokenCount: T, y: wp.baseAddress!, ldy: nh),
                ])
            }
        }
        let softmaxScale = 1 / Float(ihd).squareRoot()
        let weightScale = 1 / Float(nh).squareRoot()
        var result: [[Int]] = []
        result.reserveCapacity(T)
        qI.withUnsafeMutableBufferPointer { qp in
            for t in 0..<T { rope.apply(qp.baseAddress! + t * nh * ihd, heads: nh, count: ihd, position: p0 + t) }
            // Head weights with both scales folded in the order of the reference:
            // max(q·k, 0) · ihd^-½ · (w · nh^-½).
            for i in 0..<(T * nh) { weights[i] *= weightScale }
            var scores: [Float] = []
            var keyPointers: [UnsafePointer<Float>?] = []
            var picked: [Int32] = []
            for t in 0..<T {
                let visible = (p0 + t + 1) / m
                let k = min(c.indexTopK, visible)
                if k == 0 {
                    result.append([])
                    continue
                }
                if k == visible {
                    result.append(Array(0..<visible))
                    continue
                }
                if keyPointers.count < visible {
                    for s in keyPointers.count..<visible { keyPointers.append(UnsafePointer(keys.entry(s))) }
                }
                scores = [Float](repeating: 0, count: visible)
                picked = [Int32](repeating: 0, count: k)
                weights.withUnsafeBufferPointer { wp in
                    ck_indexer_scores(qp.baseAddress! + t * nh * ihd, nh, ihd, wp.baseAddress! + t * nh, softmaxScale, keyPointers, visible, &scores)
                }
                ck_topk(scores, visible, k, &picked)
                result.append(picked.map(Int.init))
            }
        }
        return result
    }
}
