// Indexer.swift: the Lightning Indexer of CSA layers (spec §6): scores every visible
// compressed entry for each query and keeps the top-k.
//
// score(t, s) = Σ_h (wI_h · nh^-½) · ReLU(qI_h · K_s) · ihd^-½, with qI = wq_b·qr (RoPE'd)
// and wI = weights_proj·h. Port of transformers' DeepseekV4Indexer / DeepseekV4IndexerScorer.
import Numerics

enum Indexer {
    /// For each of the `T` queries, the ids of the selected entries (any order).
    static func select(
        _ w: IndexerWeights, qr: [Float], h: [Float], tokenCount T: Int, startPosition p0: Int,
        keys: CompressorState, rope: RotaryEmbedding, config c: DeepSeekV4Config
    ) -> [[Int]] {
        let nh = c.indexHeadCount
        let ihd = c.indexHeadDim
        let m = keys.ratio
        var qI = w.wqB.apply(qr, tokenCount: T)
        let weights = w.weightsProj.apply(h, tokenCount: T)
        let softmaxScale = 1 / Float(ihd).squareRoot()
        let weightScale = 1 / Float(nh).squareRoot()
        var result: [[Int]] = []
        result.reserveCapacity(T)
        qI.withUnsafeMutableBufferPointer { qp in
            for t in 0..<T {
                for hd in 0..<nh { rope.apply(qp.baseAddress! + (t * nh + hd) * ihd, count: ihd, position: p0 + t) }
            }
            keys.entries.withUnsafeBufferPointer { kp in
                var scores: [Float] = []
                for t in 0..<T {
                    let visible = min((p0 + t + 1) / m, keys.entryCount)
                    let k = min(c.indexTopK, visible)
                    if k == 0 {
                        result.append([])
                        continue
                    }
                    scores = [Float](repeating: 0, count: visible)
                    for s in 0..<visible {
                        var total: Float = 0
                        for hd in 0..<nh {
                            let qk = dot(qp.baseAddress! + (t * nh + hd) * ihd, kp.baseAddress! + s * ihd, ihd)
                            total += max(qk, 0) * softmaxScale * (weights[t * nh + hd] * weightScale)
                        }
                        scores[s] = total
                    }
                    if k == visible {
                        result.append(Array(0..<visible))
                    } else {
                        let order = (0..<visible).sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
                        result.append(Array(order.prefix(k)))
                    }
                }
            }
        }
        return result
    }
}
