// Indexer.swift: the Lightning Indexer of CSA layers (DeepSeek-V4 paper, "Lightning Indexer";
// transformers' modeling_deepseek_v4.py, DeepseekV4Indexer): scores every visible compressed
// entry for each query and keeps the top-k, all queries of a chunk at once (ck_indexer_topk).
//
// score(t, s) = Σ_h (wI_h · nh^-½) · ReLU(qI_h · K_s) · ihd^-½, with qI = wq_b·qr (RoPE'd)
// and wI = weights_proj·h. Port of transformers' DeepseekV4Indexer / DeepseekV4IndexerScorer.
import CKernels
import Tensors

enum Indexer {
    /// For each of the `T` queries of one sequence, the ids of the selected entries: all of
    /// them in order while at most `index_topk` are visible, else the best first.
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
        let k = c.indexTopK
        // Query t sees the entries whose windows closed by its position.
        let visible = (0..<T).map { Int32((p0 + $0 + 1) / m) }
        let tileCount = (Int(visible.last ?? 0) + Int(CK_INDEXER_TILE) - 1) / Int(CK_INDEXER_TILE)
        let tiles = keys.tilePointers(count: tileCount)
        var picked = [Int32](repeating: 0, count: T * k)
        qI.withUnsafeMutableBufferPointer { qp in
            let base = qp.baseAddress!
            KernelThreads.parallelFor(T) { t in rope.apply(base + t * nh * ihd, heads: nh, count: ihd, position: p0 + t) }
            // Head weights with the head scale folded in, as the reference orders it:
            // max(q·k, 0) · ihd^-½ · (w · nh^-½).
            for i in 0..<(T * nh) { weights[i] *= weightScale }
            weights.withUnsafeBufferPointer { wp in
                let q = qp.baseAddress!, w = wp.baseAddress!
                switch keys.slots.tiles ?? .f32 {
                case .f32:
                    let f = tiles.map { $0?.assumingMemoryBound(to: Float.self) }
                    ck_indexer_topk(q, w, T, nh, ihd, softmaxScale, f, visible, k, &picked)
                case .bf16:
                    ck_indexer_topk_bf16(q, w, T, nh, ihd, softmaxScale, tiles, visible, k, &picked)
                case .int8:
                    ck_indexer_topk_i8(q, w, T, nh, ihd, softmaxScale, tiles, visible, k, &picked)
                }
            }
        }
        return (0..<T).map { t in
            let n = min(k, Int(visible[t]))
            return picked[(t * k)..<(t * k + n)].map(Int.init)
        }
    }
}
