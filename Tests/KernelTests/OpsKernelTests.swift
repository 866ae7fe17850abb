// OpsKernelTests.swift: the model's small operations (kernels/ops.c) and the product wave
// (kernels/wave.c) against their scalar twins, on awkward sizes (odd lengths, vector tails),
// each within the tolerance its header states.
import CKernels
import Foundation
import Tensors
import Testing

private func maxRelative(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { x, y in x == y ? 0 : abs(x - y) / max(abs(y), 1e-30) }.max() ?? 0
}

/// Each product's outputs when `ms` run as one wave on the same x (`tokens` rows, `ldx` apart).
func waveOutputs(_ ms: [WeightMatrix], x: [Float], ldx: Int, tokens: Int) -> [[Float]] {
    let ptrs = ms.map { UnsafeMutablePointer<Float>.allocate(capacity: tokens * $0.rows) }
    defer { ptrs.forEach { $0.deallocate() } }
    x.withUnsafeBufferPointer { xp in
        WeightMatrix.applyAll(ms.indices.map { i in
            MatrixProduct(ms[i], x: xp.baseAddress!, ldx: ldx, tokenCount: tokens, y: ptrs[i], ldy: ms[i].rows)
        })
    }
    return ms.indices.map { Array(UnsafeBufferPointer(start: ptrs[$0], count: tokens * ms[$0].rows)) }
}

@Suite(.serialized) struct OpsKernelTests {
    @Test func vectorExpIsWithinTwoUlpOfExpfEverywhere() {
        let xs = randomFloats(20_011, seed: 41).map { $0 * 120 } + [-200, -104, -87.5, -1e-8, 0, 1e-8, 88.5, 89, 1000, .nan]
        var fast = [Float](repeating: 0, count: xs.count)
        ck_exp_f32(xs, xs.count, &fast)
        for (x, f) in zip(xs, fast) {
            let e = expf(x)
            if e.isNaN { #expect(f.isNaN); continue }
            if e.isInfinite || e < Float.leastNormalMagnitude * 8 { #expect(abs(f - e) <= Float.leastNormalMagnitude * 8 || f == e, "x=\(x)"); continue }
            #expect(abs(f - e) <= 2 * e.ulp, "x=\(x): \(f) vs \(e)")
        }
    }

    /// The sampler's log-partition: vector path against the double-precision twin on awkward
    /// lengths, a vocabulary-sized row, a dominant entry and −inf entries (masked tokens).
    /// mHC's weighted sums of streams: the bits of zeroing the output and adding each term with
    /// ck_axpy_f32 in order (which they replace), for awkward lengths and term counts.
    @Test func weightedSumEqualsAxpysInOrder() {
        for D in [1, 15, 16, 17, 100, 256] {
            for n in [1, 2, 5] {
                let srcs = (0..<n).map { randomFloats(D, seed: UInt64(D * 10 + $0)) }
                let coef = randomFloats(n, seed: UInt64(D + n)).map { $0 * 3 }
                var axpys = [Float](repeating: 0, count: D)
                for j in 0..<n { srcs[j].withUnsafeBufferPointer { ck_axpy_f32(coef[j], $0.baseAddress!, &axpys, D) } }
                var fused = [Float](repeating: -7, count: D + 1)
                let bases = srcs.map { s in s.withUnsafeBufferPointer { UnsafePointer<Float>?($0.baseAddress!) } }
                withExtendedLifetime(srcs) { ck_weighted_sum_f32(bases, coef, n, D, &fused) }
                #expect(fused[..<D].map(\.bitPattern) == axpys.map(\.bitPattern), "D=\(D) n=\(n)")
                #expect(fused[D] == -7, "written past D")
            }
        }
    }

    @Test func logSumExpMatchesTwin() {
        var rows = [1, 7, 8, 9, 31, 129_280].map { n in randomFloats(n, seed: UInt64(n)).map { $0 * 30 } }
        rows.append([1000] + [Float](repeating: -1000, count: 20))
        rows.append([-.infinity, 3, -.infinity, 2, -.infinity, -.infinity, -.infinity, -.infinity, 1])
        for x in rows {
            let fast = ck_logsumexp(x, x.count), ref = ck_ref_logsumexp(x, x.count)
            #expect(abs(fast - ref) <= 1e-6 * max(abs(ref), 1), "n=\(x.count): \(fast) vs \(ref)")
        }
        #expect(ck_logsumexp([Float](repeating: -.infinity, count: 12), 12) == -.infinity)
        #expect(ck_logsumexp([], 0) == -.infinity)
    }

    @Test(arguments: [Float(7), 0])
    func swigluMatchesTwin(limit: Float) {
        for n in [1, 15, 16, 17, 513] {
            let g = randomFloats(n, seed: UInt64(n)).map { $0 * 12 }, u = randomFloats(n, seed: UInt64(n + 1)).map { $0 * 12 }
            var fast = [Float](repeating: 0, count: n), ref = fast
            ck_swiglu(g, u, n, limit, &fast)
            ck_ref_swiglu(g, u, n, limit, &ref)
            #expect(maxRelative(fast, ref) <= 1e-6, "n=\(n)")
            if limit > 0 { #expect(ref.allSatisfy { abs($0) <= limit * limit + 1e-3 }) }  // the clamps did clip
        }
    }

    /// Large calls split over the kernel threads: the same values as unsplit calls (elementwise
    /// and row-wise work: the split must not change a bit).
    @Test func splitSwiGLUNormsAndSinkhornEqualUnsplitCalls() {
        KernelThreads.start(count: 2)
        let n = 100_003
        let g = randomFloats(n, seed: 71).map { $0 * 12 }, u = randomFloats(n, seed: 72).map { $0 * 12 }
        var whole = [Float](repeating: 0, count: n), ref = whole
        ck_swiglu(g, u, n, 7, &whole)
        ck_ref_swiglu(g, u, n, 7, &ref)
        #expect(maxRelative(whole, ref) <= 1e-6)
        for start in [0, 8_191, 50_000, n - 999] {  // pieces small enough to run unsplit
            var piece = [Float](repeating: 0, count: 999)
            g.withUnsafeBufferPointer { gp in
                u.withUnsafeBufferPointer { up in ck_swiglu(gp.baseAddress! + start, up.baseAddress! + start, 999, 7, &piece) }
            }
            #expect(piece == Array(whole[start..<(start + 999)]), "swiglu piece at \(start)")
        }
        for (rows, width) in [(300, 256), (1_000, 64), (37, 1_024)] {
            let x = randomFloats(rows * width, seed: UInt64(rows)).map { $0 * 5 }, w = randomFloats(width, seed: 9)
            var split = x, each = x
            ck_rmsnorm_rows(&split, rows, width, width, w, 1e-6)
            each.withUnsafeMutableBufferPointer { p in
                for r in 0..<rows { ck_rmsnorm(p.baseAddress! + r * width, width, w, 1e-6) }
            }
            #expect(split == each, "rmsnorm rows=\(rows) width=\(width)")
        }
        let c = randomFloats(300 * 16, seed: 77).map { abs($0) + 0.01 }
        var fast = c, slow = c
        ck_sinkhorn(&fast, 300, 4, 20, 1e-6)
        ck_ref_sinkhorn(&slow, 300, 4, 20, 1e-6)
        #expect(fast == slow)
    }

    @Test func rmsNormMatchesTwin() {
        for n in [1, 31, 32, 33, 1024, 4097] {
            let x = randomFloats(n, seed: UInt64(n) * 3).map { $0 * 5 }
            let w = randomFloats(n, seed: 5)
            var fast = x, ref = x, fastNoW = x, refNoW = x
            ck_rmsnorm(&fast, n, w, 1e-6)
            ck_ref_rmsnorm(&ref, n, w, 1e-6)
            ck_rmsnorm(&fastNoW, n, nil, 1e-6)
            ck_ref_rmsnorm(&refNoW, n, nil, 1e-6)
            #expect(maxRelative(fast, ref) <= 1e-6)
            #expect(maxRelative(fastNoW, refNoW) <= 1e-6)
        }
    }

    @Test func ropeOverHeadsIsBitIdenticalToTwin() {
        let inv = (0..<32).map { powf(10000, -Float($0) / 32) }
        for (heads, width, dim, pos) in [(1, 64, 64, 7), (16, 80, 64, 1234), (3, 131, 2, 99_999), (64, 512, 64, 5)] {
            let x = randomFloats(heads * (width + 3), seed: UInt64(heads + width))
            for inverse in [Int32(0), 1] {
                var fast = x, ref = x
                ck_rope(&fast, heads, width + 3, width, dim, inv, Float(pos), 1, inverse)
                ck_ref_rope(&ref, heads, width + 3, width, dim, inv, Float(pos), 1, inverse)
                #expect(fast == ref)
                #expect(fast != x || dim == 0)
            }
        }
    }

    @Test func topKIsIdenticalToTheFullSort() {
        for (n, k) in [(0, 3), (5, 5), (7, 10), (777, 50), (4096, 512), (100, 1)] {
            // Few distinct values: many ties at the boundary.
            let s = randomFloats(max(n, 1), seed: UInt64(n + k)).map { ($0 * 20).rounded() }
            var fast = [Int32](repeating: -1, count: min(n, k)), ref = fast
            ck_topk(s, n, k, &fast)
            ck_ref_topk(s, n, k, &ref)
            #expect(fast == ref, "n=\(n) k=\(k)")
            // The twin is the definition: descending, ties by index.
            for i in 1..<max(ref.count, 1) where ref.count > 1 {
                let a = Int(ref[i - 1]), b = Int(ref[i])
                #expect(s[a] > s[b] || (s[a] == s[b] && a < b))
            }
        }
    }

    @Test func sinkhornBatchesAreBitIdenticalToTwin() {
        for (count, n) in [(1, 4), (15, 4), (16, 4), (37, 4), (5, 8), (3, 3), (2, 9)] {
            let c = randomFloats(count * n * n, seed: UInt64(count * n)).map { abs($0) + 0.01 }
            var fast = c, ref = c
            ck_sinkhorn(&fast, count, n, 20, 1e-6)
            ck_ref_sinkhorn(&ref, count, n, 20, 1e-6)
            #expect(fast == ref, "count=\(count) n=\(n)")
            // Nearly doubly stochastic after 20 iterations.
            for b in 0..<count {
                for j in 0..<n { #expect(abs((0..<n).reduce(Float(0)) { $0 + ref[b * n * n + $1 * n + j] } - 1) < 1e-3) }
            }
        }
    }

    @Test func compressorPoolingMatchesTwin() {
        for (slots, c, m, overlap) in [(8, 72, 4, Int32(1)), (4, 17, 4, 0), (128, 512, 128, 0), (2, 16, 1, 1)] {
            let width = overlap != 0 ? 2 * c : c
            let kv = randomFloats(slots * width, seed: UInt64(slots + c))
            var score = randomFloats(slots * width, seed: UInt64(c)).map { $0 * 6 }
            for k in 0..<width { score[k] = -.infinity }  // an unfilled slot
            var fast = [Float](repeating: 0, count: c), ref = fast
            ck_compress_pool(kv, score, slots, width, c, m, overlap, &fast)
            ck_ref_compress_pool(kv, score, slots, width, c, m, overlap, &ref)
            // Weighted means of values in [-1, 1]: ckernels.h's absolute 2e-6 · max|kv| (relative
            // fails near 0).
            let scale = kv.map(abs).max() ?? 1
            for i in 0..<c { #expect(abs(fast[i] - ref[i]) <= 2e-6 * scale, "slots=\(slots) c=\(c) k=\(i)") }
            #expect(ref.allSatisfy { $0.isFinite })
        }
    }

    @Test func indexerScoresMatchTwin() {
        KernelThreads.start(count: 2)
        for (heads, d, n) in [(8, 32, 1), (16, 64, 3001), (64, 128, 100), (3, 17, 33)] {
            let q = randomFloats(heads * d, seed: UInt64(heads)), w = randomFloats(heads, seed: 9)
            let store = randomFloats(n * d, seed: UInt64(n))
            var fast = [Float](repeating: 0, count: n), ref = fast
            store.withUnsafeBufferPointer { sp in
                let keys: [UnsafePointer<Float>?] = (0..<n).map { sp.baseAddress! + (($0 * 7) % n) * d }
                ck_indexer_scores(q, heads, d, w, 0.125, keys, n, &fast)
                ck_ref_indexer_scores(q, heads, d, w, 0.125, keys, n, &ref)
            }
            for i in 0..<n { #expect(abs(fast[i] - ref[i]) <= 1e-5 * Float(heads * d).squareRoot()) }
            #expect(ref.contains { $0 != 0 })
        }
    }

    /// A wave of products (mixed formats, shared inputs, row slices of scaled matrices) is
    /// bit-identical to running each product alone.
    @Test func productWaveIsBitIdenticalToSeparateProducts() {
        KernelThreads.start(count: 2)
        let k = 300
        let x = randomFloats(5 * k, seed: 77)
        let a = randomFloats(203 * k, seed: 78), b = randomFloats(64 * k, seed: 79)
        let bf = a.map(floatToBF16), f16 = b.map { Float16($0).bitPattern }
        for tokens in [1, 2, 3, 5] {
            bf.withUnsafeBytes { bp in
                f16.withUnsafeBytes { hp in
                    a.withUnsafeBytes { fp in
                        let ms = [
                            WeightMatrix(rows: 203, cols: k, type: .bf16, base: bp.baseAddress!, owner: nil),
                            WeightMatrix(rows: 203, cols: k, type: .bf16, base: bp.baseAddress!, owner: nil).rows(3..<200),
                            WeightMatrix(rows: 64, cols: k, type: .f16, base: hp.baseAddress!, owner: nil),
                            WeightMatrix(rows: 203, cols: k, type: .f32, base: fp.baseAddress!, owner: nil),
                        ]
                        let solo = ms.map { $0.apply(Array(x[0..<(tokens * k)]), tokenCount: tokens) }
                        #expect(waveOutputs(ms, x: x, ldx: k, tokens: tokens) == solo, "tokens=\(tokens)")
                    }
                }
            }
        }
    }

    /// FP8/FP4 products decoded in registers (1-8 tokens) give the same bits as the same
    /// tokens inside a larger batch (decoded-rows path), for E8M0 and float32 scales, scales
    /// near overflow, partial blocks, odd sizes and NaN codes; and each element is within
    /// fp32 rounding of the exact sum over the decoded weights.
    @Test(arguments: [StorageType.f8e4m3, .fp4e2m1])
    func quantizedProductsAreBatchIndependentAndExact(type: StorageType) {
        var rng: UInt64 = 0x5EED
        func next() -> UInt64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
        for (k, n) in [(1024, 37), (130, 5), (48, 1), (64, 128), (200, 3), (16, 7), (2, 9), (256, 4), (256, 520)] {
            // AVX-512 sums in many short chains (measured within 1e-6 relative); machines
            // without it run the scalar twin, one chain of k terms: the sequential-sum bound.
            let bound = String(cString: ck_impl_name()) == "avx512" ? 1e-6 : Double(k) * 0x1p-24
            for f32 in [Int32(0), 1] {
                let fp4 = type == .fp4e2m1
                let bc = fp4 ? 32 : (k % 128 == 0 ? 128 : 16), br = fp4 ? 1 : 128
                let ld = (k + bc - 1) / bc, sr = (n + br - 1) / br
                let rb = ck_row_bytes(type.kernelType, k)
                var w = (0..<(n * rb)).map { _ -> UInt8 in
                    let b = UInt8(truncatingIfNeeded: next())
                    return !fp4 && b & 0x7F == 0x7F ? b ^ 1 : b
                }
                if !fp4 && k >= 16 { w[3] = 0x7F }  // one NaN code: row 0 is NaN, the others not
                // E8M0 bytes around 1 in most 128-row blocks (FP8 then scales x instead of the
                // weights); blocks with a byte above 134 (2^120 · scale would overflow), one of
                // 134 (x · 2^127 overflows for the large x below) or 3 (2^120 · scale < 1) take
                // the per-weight path. Both must give the decoded-rows path's bits.
                let e8 = (0..<(sr * ld)).map { i -> UInt8 in
                    let special: [UInt8] = [136, 134, 3]
                    let blockRow = i / ld
                    if blockRow % 4 != 0 && i % ld == 0 { return special[(blockRow - 1) % 3] }
                    if fp4 && i % 7 == 0 { return 136 }
                    return UInt8(115 + Int(next() % 15))
                }
                let sf = (0..<(sr * ld)).map { _ in Float(next() % 1000) / 333 + 0.01 }
                let batch = 13  // past the 8 tokens decoded in registers: the decoded-rows path
                var x = randomFloats(batch * k, seed: UInt64(k + n))
                for i in stride(from: 5, to: x.count, by: 97) { x[i] *= 1000 }
                var all = [Float](repeating: 0, count: batch * n)
                var decoded = [Float](repeating: 0, count: n * k)
                var few: [[Float]] = []
                w.withUnsafeBytes { wp in
                    func run(_ data: UnsafeRawPointer) {
                        var s = ck_scales(data: data, f32: f32, ld: ld, block_rows: br, block_cols: bc, row0: 0)
                        ck_matmul_scaled(x, k, batch, k, wp.baseAddress!, type.kernelType, &s, n, &all, n)
                        for tokens in 1...8 {
                            var y = [Float](repeating: 0, count: tokens * n)
                            ck_matmul_scaled(x, k, tokens, k, wp.baseAddress!, type.kernelType, &s, n, &y, n)
                            few.append(y)
                        }
                        ck_decode_rows(wp.baseAddress!, type.kernelType, k, &s, 0, n, &decoded)
                    }
                    if f32 != 0 { sf.withUnsafeBytes { run($0.baseAddress!) } } else { e8.withUnsafeBytes { run($0.baseAddress!) } }
                }
                for (i, y) in few.enumerated() {
                    let same = zip(y, all.prefix(y.count)).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
                    #expect(same, "\(type) k=\(k) n=\(n) tokens=\(i + 1) f32=\(f32)")
                }
                for t in 0..<batch {
                    for r in 0..<n {
                        var exact = 0.0, magnitude = 0.0
                        for j in 0..<k {
                            let p = Double(x[t * k + j]) * Double(decoded[r * k + j])
                            exact += p
                            magnitude += abs(p)
                        }
                        let got = all[t * n + r]
                        if exact.isNaN { #expect(got.isNaN); continue }
                        #expect(abs(Double(got) - exact) <= bound * magnitude + 1e-30, "\(type) k=\(k) t=\(t) r=\(r)")
                    }
                }
            }
        }
    }
}
