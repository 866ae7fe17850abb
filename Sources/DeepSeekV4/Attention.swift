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
import CKernels
import Foundation
import ModelRuntime
import Tensors

/// The rows of one sequence inside a batch, and where its cache lives.
struct BatchSegment {
    /// First row of the sequence in the batch's `[rows, …]` matrices.
    let row: Int
    let count: Int
    /// Position of the first row.
    let position: Int
    let state: UnsafeMutablePointer<Float>
    let pages: PageTable
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
        segments: [BatchSegment], rope: RotaryEmbedding, config c: DeepSeekV4Config,
        observe: ((_ picks: [[Int]], _ position: Int) -> Void)? = nil
    ) -> [Float] {
        let p = project(w, h: h, positions: positions, rope: rope, config: c)
        // Every row of every segment is written by the attention kernels (all heads and dims).
        var o = [Float](unsafeUninitializedCapacity: positions.count * c.headCount * c.headDim) { _, n in n = positions.count * c.headCount * c.headDim }
        h.withUnsafeBufferPointer { hp in
            p.qr.withUnsafeBufferPointer { qrp in
                p.kv.withUnsafeBufferPointer { kvp in
                    p.q.withUnsafeBufferPointer { qp in
                        o.withUnsafeMutableBufferPointer { op in
                            let rows = Rows(h: hp.baseAddress!, qr: qrp.baseAddress!, kv: kvp.baseAddress!, q: qp.baseAddress!, o: op.baseAddress!)
                            for seg in segments {
                                attend(w, kind: kind, slots: slots, segment: seg, rows: rows, rope: rope, config: c, observe: observe)
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
        var qr = [Float](unsafeUninitializedCapacity: rows * c.qLoraRank) { _, n in n = rows * c.qLoraRank }  // products write all
        var kv = [Float](unsafeUninitializedCapacity: rows * d) { _, n in n = rows * d }
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
                VectorOps.rmsNormRows(p.baseAddress!, rows: rows, count: c.qLoraRank, stride: c.qLoraRank, weight: n.baseAddress!, eps: eps)
            }
        }
        var q = w.wqB.apply(qr, tokenCount: rows)
        q.withUnsafeMutableBufferPointer { p in
            VectorOps.rmsNormRows(p.baseAddress!, rows: rows * H, count: d, stride: d, weight: nil, eps: eps)
            let base = p.baseAddress!
            KernelThreads.parallelFor(rows) { t in rope.apply(base + t * H * d, heads: H, count: d, position: positions[t]) }
        }
        // Shared K=V head.
        kv.withUnsafeMutableBufferPointer { p in
            w.kvNorm.withUnsafeBufferPointer { n in
                VectorOps.rmsNormRows(p.baseAddress!, rows: rows, count: d, stride: d, weight: n.baseAddress!, eps: eps)
                let base = p.baseAddress!
                KernelThreads.parallelFor(rows) { t in rope.apply(base + t * d, count: d, position: positions[t]) }
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
        rope: RotaryEmbedding, config c: DeepSeekV4Config, observe: ((_ picks: [[Int]], _ position: Int) -> Void)? = nil
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
            observe?(selected, seg.position)
        }
        let ring = seg.state + slots.ringOffset
        let window = Window(ring: ring, rows: rows, segment: seg, width: W, dim: d)
        if kind == .csa, let main {
            attendSelected(w, entries: main, selected: selected, window: window, rows: rows, segment: seg, config: c)
        } else {
            attendRanges(w, entries: kind == .hca ? main : nil, window: window, rows: rows, segment: seg, config: c)
        }
        KernelThreads.parallelFor(seg.count) { i in
            rope.apply(rows.o + (seg.row + i) * H * d, heads: H, count: d, position: seg.position + i, inverse: true)
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

    /// Where a segment's sliding-window keys live: positions before the segment in the ring
    /// (slot p mod W), its own in the batch's kv rows.
    struct Window {
        let ring: UnsafeMutablePointer<Float>
        let rows: Rows
        let segment: BatchSegment
        let width: Int
        let dim: Int

        @inline(__always)
        func key(_ pos: Int) -> UnsafePointer<Float> {
            pos >= segment.position
                ? rows.kv + (segment.row + pos - segment.position) * dim : UnsafePointer(ring + (pos % width) * dim)
        }

        /// The window of the query at position P: positions max(0, P − W + 1) ... P.
        func positions(of P: Int) -> ClosedRange<Int> { max(0, P - width + 1)...P }
    }

    /// Sliding and HCA layers: every query of the segment attends over one shared key list —
    /// the visible compressed entries (HCA), then the window positions — in blocks of queries
    /// (ck_attend_ranges: each key read once per block, not once per query).
    static func attendRanges(
        _ w: AttentionWeights, entries main: CompressorView?, window: Window, rows: Rows, segment seg: BatchSegment,
        config c: DeepSeekV4Config
    ) {
        let H = c.headCount
        let d = c.headDim
        let T = seg.count
        let first = window.positions(of: seg.position).lowerBound
        let ratio = main?.slots.ratio ?? 1
        let entryCount = main == nil ? 0 : (seg.position + T) / ratio
        // HCA entries in their stored format (the kernel decodes each key block as it goes),
        // then the window's fp32 keys.
        var keys: [UnsafeRawPointer?] = []
        keys.reserveCapacity(entryCount + seg.position + T - first)
        if let main {
            for e in 0..<entryCount { keys.append(UnsafeRawPointer(main.entry(e))) }
        }
        for pos in first..<(seg.position + T) { keys.append(UnsafeRawPointer(window.key(pos))) }
        var ranges = [Int32](repeating: 0, count: 4 * T)
        for i in 0..<T {
            let P = seg.position + i
            let visible = window.positions(of: P)
            ranges[4 * i + 1] = Int32(main == nil ? 0 : (P + 1) / ratio)
            ranges[4 * i + 2] = Int32(entryCount + visible.lowerBound - first)
            ranges[4 * i + 3] = Int32(entryCount + visible.upperBound - first + 1)
        }
        let scale = 1 / Float(d).squareRoot()
        w.sinks.withUnsafeBufferPointer { sp in
            ck_attend_ranges_kv(
                rows.q + seg.row * H * d, T, H, d, keys, keys.count, main?.slots.format ?? CK_KV_F32, entryCount,
                main?.slots.ropeDims ?? 0, ranges, sp.baseAddress!, scale, rows.o + seg.row * H * d)
        }
    }

    /// CSA layers: each query attends over its window and its own indexer picks (per query,
    /// spread over the kernel threads; picks not stored as floats are decoded per query).
    static func attendSelected(
        _ w: AttentionWeights, entries main: CompressorView, selected: [[Int]], window: Window, rows: Rows,
        segment seg: BatchSegment, config c: DeepSeekV4Config
    ) {
        let H = c.headCount
        let d = c.headDim
        let scale = 1 / Float(d).squareRoot()
        KernelThreads.parallelFor(seg.count) { i in
            let t = seg.row + i
            let P = seg.position + i
            var keys: [UnsafePointer<Float>] = []
            keys.reserveCapacity(window.width + selected[i].count)
            for pos in window.positions(of: P) { keys.append(window.key(pos)) }
            var picks: UnsafeMutablePointer<Float>?
            defer { picks?.deallocate() }
            if main.floatEntries {
                for e in selected[i] { keys.append(UnsafePointer(main.entry(e))) }
            } else {
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(selected[i].count, 1) * d)
                picks = buffer
                for (j, e) in selected[i].enumerated() {
                    main.load(e, into: buffer + j * d)
                    keys.append(UnsafePointer(buffer + j * d))
                }
            }
            w.sinks.withUnsafeBufferPointer { sp in
                Tensors.attend(query: rows.q + t * H * d, heads: H, dim: d, keys: keys, sinks: sp.baseAddress!, scale: scale, into: rows.o + t * H * d)
            }
        }
    }

    /// Grouped output projection: z_g = wo_a[g] · o_g, out = wo_b · z.
    static func output(_ w: AttentionWeights, o: [Float], rows: Int, config c: DeepSeekV4Config) -> [Float] {
        let G = c.outputGroups
        let groupIn = c.headCount * c.headDim / G
        let r = c.outputLoraRank
        var z = [Float](unsafeUninitializedCapacity: rows * G * r) { _, n in n = rows * G * r }  // the groups write all
        o.withUnsafeBufferPointer { op in
            z.withUnsafeMutableBufferPointer { zp in
                // The G group products in one wave over the kernel threads (the bits of one apply each).
                WeightMatrix.applyAll((0..<G).map { g in
                    MatrixProduct(
                        w.woA.rows((g * r)..<((g + 1) * r)), x: op.baseAddress! + g * groupIn, ldx: c.headCount * c.headDim, tokenCount: rows,
                        y: zp.baseAddress! + g * r, ldy: G * r)
                })
            }
        }
        return w.woB.apply(z, tokenCount: rows)
    }
}
