// Attention.swift: the V4 attention block for a batch of sequences (DeepSeek-V4 paper, "Hybrid
// Attention"; transformers' modeling_deepseek_v4.py, DeepseekV4Attention).
//
// Low-rank query path with per-head RMSNorm, one shared K=V head, partial RoPE, a sliding
// window of `sliding_window` tokens including the query, compressed entries (all visible
// ones for HCA, the indexer's top-k for CSA), a per-head sink in the softmax denominator,
// inverse RoPE on the output, and the grouped low-rank output projection. Projections run
// over every token of the batch at once; the attention itself runs per sequence over that
// sequence's own ring and pages. Port of transformers' DeepseekV4Attention +
// eager_attention_forward.
import Foundation
import Tensors

/// The rows of one sequence inside a batch, and where its cache lives.
struct BatchSegment {
    /// First row of the sequence in the batch's `[rows, …]` matrices.
    let row: Int
    let count: Int
    /// Position of the first row.
    let position: Int
    let state: UnsafeMutablePointer<Float>
    let pages: [UnsafeMutablePointer<Float>]
    /// Receives each layer's state after this segment, when set.
    let snapshot: UnsafeMutablePointer<Float>?
}

enum Attention {
    /// Runs the attention block over all `segments`.
    /// - Parameters:
    ///   - h: normed block input `[rows, D]`.
    ///   - positions: `[rows]` absolute positions.
    /// - Returns: the block output `[rows, D]`.
    static func forward(
        _ w: AttentionWeights, kind: AttentionKind, slots: LayerSlots, h: [Float], positions: [Int],
        segments: [BatchSegment], rope: RotaryEmbedding, config c: DeepSeekV4Config
    ) -> [Float] {
        let p = project(w, h: h, positions: positions, rope: rope, config: c)
        var o = [Float](repeating: 0, count: positions.count * c.headCount * c.headDim)
        h.withUnsafeBufferPointer { hp in
            p.qr.withUnsafeBufferPointer { qrp in
                p.kv.withUnsafeBufferPointer { kvp in
                    p.q.withUnsafeBufferPointer { qp in
                        o.withUnsafeMutableBufferPointer { op in
                            let rows = Rows(h: hp.baseAddress!, qr: qrp.baseAddress!, kv: kvp.baseAddress!, q: qp.baseAddress!, o: op.baseAddress!)
                            for seg in segments {
                                attend(w, kind: kind, slots: slots, segment: seg, rows: rows, rope: rope, config: c)
                            }
                        }
                    }
                }
            }
        }
        return output(w, o: o, rows: positions.count, config: c)
    }

    /// The projections of every row: normed query latents `qr` `[rows, qLora]`, queries `q`
    /// `[rows, H, d]` (per-head RMSNorm, RoPE) and the shared K=V head `kv` `[rows, d]`.
    static func project(
        _ w: AttentionWeights, h: [Float], positions: [Int], rope: RotaryEmbedding, config c: DeepSeekV4Config
    ) -> (qr: [Float], q: [Float], kv: [Float]) {
        let rows = positions.count
        let H = c.headCount
        let d = c.headDim
        let eps = c.rmsNormEps
        // Query path: qr = RMSNorm(wq_a·h); q = wq_b·qr per head, unweighted RMSNorm, RoPE.
        // wq_a and wkv read the same input: one wave over the kernel threads.
        var qr = [Float](repeating: 0, count: rows * c.qLoraRank)
        var kv = [Float](repeating: 0, count: rows * d)
        h.withUnsafeBufferPointer { hp in
            qr.withUnsafeMutableBufferPointer { qp in
                kv.withUnsafeMutableBufferPointer { kp in
                    WeightMatrix.applyAll([
                        MatrixProduct(w.wqA, x: hp.baseAddress!, ldx: c.hiddenSize, tokenCount: rows, y: qp.baseAddress!, ldy: c.qLoraRank),
                        MatrixProduct(w.wkv, x: hp.baseAddress!, ldx: c.hiddenSize, tokenCount: rows, y: kp.baseAddress!, ldy: d),
                    ])
                }
            }
        }
        qr.withUnsafeMutableBufferPointer { p in
            w.qNorm.withUnsafeBufferPointer { n in
                for t in 0..<rows { VectorOps.rmsNorm(p.baseAddress! + t * c.qLoraRank, count: c.qLoraRank, weight: n.baseAddress!, eps: eps) }
            }
        }
        var q = w.wqB.apply(qr, tokenCount: rows)
        q.withUnsafeMutableBufferPointer { p in
            for t in 0..<rows {
                for hd in 0..<H { VectorOps.rmsNorm(p.baseAddress! + (t * H + hd) * d, count: d, weight: nil, eps: eps) }
                rope.apply(p.baseAddress! + t * H * d, heads: H, count: d, position: positions[t])
            }
        }
        // Shared K=V head.
        kv.withUnsafeMutableBufferPointer { p in
            w.kvNorm.withUnsafeBufferPointer { n in
                for t in 0..<rows {
                    VectorOps.rmsNorm(p.baseAddress! + t * d, count: d, weight: n.baseAddress!, eps: eps)
                    rope.apply(p.baseAddress! + t * d, count: d, position: positions[t])
                }
            }
        }
        return (qr, q, kv)
    }

    /// The batch's per-row buffers, as `project` made them (`o`: the attention output).
    struct Rows {
        let h: UnsafePointer<Float>
        let qr: UnsafePointer<Float>
        let kv: UnsafePointer<Float>
        let q: UnsafePointer<Float>
        let o: UnsafeMutablePointer<Float>
    }

    /// One sequence's attention: its compressors take the new rows, the indexer picks CSA
    /// entries, each query attends to its window, its compressed entries and the sink; the
    /// ring keeps the last `W` kv vectors and the snapshot (if any) the state after them.
    static func attend(
        _ w: AttentionWeights, kind: AttentionKind, slots: LayerSlots, segment seg: BatchSegment, rows: Rows,
        rope: RotaryEmbedding, config c: DeepSeekV4Config
    ) {
        let H = c.headCount
        let d = c.headDim
        let W = c.slidingWindow
        let hRows = rows.h + seg.row * c.hiddenSize
        // Entries closed by this chunk (visible by position below).
        var main: CompressorView?
        if let cw = w.compressor, let cs = slots.compressor {
            let v = CompressorView(slots: cs, state: seg.state, pages: seg.pages)
            Compressor.append(cw, view: v, h: hRows, tokenCount: seg.count, startPosition: seg.position, rope: rope, eps: c.rmsNormEps)
            main = v
        }
        var selected: [[Int]] = []
        if kind == .csa, let iw = w.indexer, let isl = slots.indexer {
            let v = CompressorView(slots: isl, state: seg.state, pages: seg.pages)
            Compressor.append(iw.compressor, view: v, h: hRows, tokenCount: seg.count, startPosition: seg.position, rope: rope, eps: c.rmsNormEps)
            selected = Indexer.select(
                iw, qr: rows.qr + seg.row * c.qLoraRank, h: hRows, tokenCount: seg.count,
                startPosition: seg.position, keys: v, rope: rope, config: c)
        }
        let ring = seg.state + slots.ringOffset
        let scale = 1 / Float(d).squareRoot()
        // Queries are independent: spread them over the kernel threads.
        KernelThreads.parallelFor(seg.count) { i in
            let t = seg.row + i
            let P = seg.position + i
            var keys: [UnsafePointer<Float>] = []
            keys.reserveCapacity(W + (selected.isEmpty ? 0 : selected[i].count))
            for pos in max(0, P - W + 1)...P {
                keys.append(pos >= seg.position ? rows.kv + (seg.row + pos - seg.position) * d : UnsafePointer(ring + (pos % W) * d))
            }
            if let main {
                switch kind {
                case .sliding: break
                case .hca:
                    for e in 0..<((P + 1) / main.slots.ratio) { keys.append(UnsafePointer(main.entry(e))) }
                case .csa:
                    for e in selected[i] { keys.append(UnsafePointer(main.entry(e))) }
                }
            }
            let out = rows.o + t * H * d
            w.sinks.withUnsafeBufferPointer { sp in
                Tensors.attend(query: rows.q + t * H * d, heads: H, dim: d, keys: keys, sinks: sp.baseAddress!, scale: scale, into: out)
            }
            rope.apply(out, heads: H, count: d, position: P, inverse: true)
        }
        // Remember the last `W` kv vectors of the sequence.
        for i in max(0, seg.count - W)..<seg.count {
            (ring + ((seg.position + i) % W) * d).update(from: rows.kv + (seg.row + i) * d, count: d)
        }
        if let snap = seg.snapshot {
            let r = slots.stateRange
            (snap + r.lowerBound).update(from: seg.state + r.lowerBound, count: r.count)
        }
    }

    /// Grouped output projection: z_g = wo_a[g] · o_g, out = wo_b · z.
    static func output(_ w: AttentionWeights, o: [Float], rows: Int, config c: DeepSeekV4Config) -> [Float] {
        let G = c.outputGroups
        let groupIn = c.headCount * c.headDim / G
        let r = c.outputLoraRank
        var z = [Float](repeating: 0, count: rows * G * r)
        o.withUnsafeBufferPointer { op in
            z.withUnsafeMutableBufferPointer { zp in
                for g in 0..<G {
                    w.woA.rows((g * r)..<((g + 1) * r)).apply(
                        op.baseAddress! + g * groupIn, ldx: c.headCount * c.headDim, tokenCount: rows, into: zp.baseAddress! + g * r, ldy: G * r)
                }
            }
        }
        return w.woB.apply(z, tokenCount: rows)
    }
}
