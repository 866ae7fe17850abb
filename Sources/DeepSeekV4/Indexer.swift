// Indexer.swift: the Lightning Indexer of CSA layers (spec §6): scores every visible
// compressed entry for each query and keeps the top-k.
//
// score(t, s) = Σ_h (wI_h · nh^-½) · ReLU(qI_h · K_s) · ihd^-½, with qI = wq_b·qr (RoPE'd)
// and wI = weights_proj·h. Port of transformers' DeepseekV4Indexer / DeepseekV4IndexerScorer.
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
        qI.withUnsafeMutableBufferPointer { w.wqB.apply(qr, ldx: c.qLoraRank, tokenCount: T, into: $0.baseAddress!, ldy: nh * ihd) }
        weights.withUnsafeMutableBufferPointer { w.weightsProj.apply(h, ldx: c.hiddenSize, tokenCount: T, into: $0.baseAddress!, ldy: nh) }
        let softmaxScale = 1 / Float(ihd).squareRoot()
        let weightScale = 1 / Float(nh).squareRoot()
        var result: [[Int]] = []
        result.reserveCapacity(T)
        qI.withUnsafeMutableBufferPointer { qp in
            for t in 0..<T {
                for hd in 0..<nh { rope.apply(qp.baseAddress! + (t * nh + hd) * ihd, count: ihd, position: p0 + t) }
            }
            var scores: [Float] = []
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
                scores = [Float](repeating: 0, count: visible)
                for s in 0..<visible {
                    let key = keys.entry(s)
                    var total: Float = 0
                    for hd in 0..<nh {
                        let qk = dot(qp.baseAddress! + (t * nh + hd) * ihd, key, ihd)
                        total += max(qk, 0) * softmaxScale * (weights[t * nh + hd] * weightScale)
                    }
                    scores[s] = total
                }
                let order = (0..<visible).sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
                result.append(Array(order.prefix(k)))
            }
        }
        return result
    }
}
