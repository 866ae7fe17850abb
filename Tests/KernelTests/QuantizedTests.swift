// QuantizedTests.swift: the FP8 / FP4 / E8M0 decoders against torch's (every code point, from
// Tests/Fixtures/fp-golden.json written by tools/make_fp_golden.py), and the quantized matrix
// products against their scalar twin and against a dequantize-then-multiply reference.
import CKernels
import Foundation
import Tensors
import Testing

struct FPGolden: Decodable {
    let e4m3: [Double?]
    let e8m0: [Double?]
    let e2m1: [Double]

    static func load() throws -> FPGolden {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/fp-golden.json")
        return try JSONDecoder().decode(FPGolden.self, from: Data(contentsOf: url))
    }
}

/// A quantized test matrix: stored bytes, scale bytes (E8M0) and its layout.
struct QuantMatrix {
    let type: StorageType
    let rows: Int, cols: Int
    var bytes: [UInt8]
    var scales: [UInt8]
    var scaleFloats: [Float]
    let blockRows: Int, blockCols: Int, stride: Int

    /// Random codes (no NaN) and random E8M0 scales near 1.
    init(type: StorageType, rows: Int, cols: Int, seed: UInt64) {
        self.type = type
        self.rows = rows
        self.cols = cols
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s }
        let rowBytes = type.byteCount(elements: cols)
        bytes = (0..<(rows * rowBytes)).map { _ in
            var b = UInt8(truncatingIfNeeded: next() >> 24)
            if type == .f8e4m3 && b & 0x7F == 0x7F { b = 0x3C }
            return b
        }
        (blockRows, blockCols) = type == .f8e4m3 ? (128, 128) : (1, 32)
        stride = (cols + blockCols - 1) / blockCols
        let gridRows = (rows + blockRows - 1) / blockRows
        scales = (0..<(gridRows * stride)).map { _ in UInt8(120 + Int(next() >> 40) % 14) }
        scaleFloats = scales.map { Float(pow(2.0, Double(Int($0) - 127))) }
    }

    /// Dequantized `[rows, cols]` from the golden tables (independent of the kernels).
    func dequantized(_ g: FPGolden) -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        let rowBytes = type.byteCount(elements: cols)
        for r in 0..<rows {
            for c in 0..<cols {
                let v: Double
                if type == .f8e4m3 {
                    v = g.e4m3[Int(bytes[r * rowBytes + c])]!
                } else {
                    let b = bytes[r * rowBytes + c / 2]
                    v = g.e2m1[Int(c % 2 == 0 ? b & 15 : b >> 4)]
                }
                out[r * cols + c] = Float(v) * scaleFloats[(r / blockRows) * stride + c / blockCols]
            }
        }
        return out
    }

    func withMatrix<R>(f32Scales: Bool = false, _ body: (WeightMatrix) -> R) -> R {
        bytes.withUnsafeBytes { w in
            if f32Scales {
                return scaleFloats.withUnsafeBytes { sp in
                    body(WeightMatrix(rows: rows, cols: cols, type: type, base: w.baseAddress!,
                                      scales: BlockScales(base: sp.baseAddress!, isFloat32: true, stride: stride, blockRows: blockRows, blockCols: blockCols), owner: nil))
                }
            }
            return scales.withUnsafeBytes { sp in
                body(WeightMatrix(rows: rows, cols: cols, type: type, base: w.baseAddress!,
                                  scales: BlockScales(base: sp.baseAddress!, isFloat32: false, stride: stride, blockRows: blockRows, blockCols: blockCols), owner: nil))
            }
        }
    }
}

@Suite(.serialized) struct QuantizedTests {
    @Test func everyE4M3CodePointMatchesTorch() throws {
        let g = try FPGolden.load()
        #expect(g.e4m3.count == 256)
        for b in 0..<256 {
            let ours = QuantizedFormats.e4m3(UInt8(b))
            if let want = g.e4m3[b] {
                #expect(Double(ours) == want && ours.sign == (b >= 128 ? .minus : .plus), "e4m3 0x\(String(b, radix: 16))")
            } else {
                #expect(ours.isNaN, "e4m3 0x\(String(b, radix: 16)) should be NaN")
            }
        }
        // The bulk converter agrees with the single-value decoder.
        let all = (0..<256).map { UInt8($0) }
        var bulk = [Float](repeating: 0, count: 256)
        all.withUnsafeBytes { decode($0.baseAddress!, type: .f8e4m3, count: 256, into: &bulk) }
        for b in 0..<256 { #expect(bulk[b].bitPattern == QuantizedFormats.e4m3(UInt8(b)).bitPattern) }
    }

    /// The AVX-512 row decoders (bit tricks for E4M3, a register table for E2M1) agree with the
    /// scalar decoders on every byte.
    @Test func vectorRowDecodersMatchScalarOnEveryByte() {
        let all = (0..<256).map { UInt8($0) }
        for (type, cols) in [(StorageType.f8e4m3, 256), (.fp4e2m1, 512)] {
            all.withUnsafeBytes { w in
                let m = WeightMatrix(rows: 1, cols: cols, type: type, base: w.baseAddress!, owner: nil)
                KernelSelection.forceScalar(true)
                let scalar = m.toFloat()
                KernelSelection.forceScalar(false)
                let fast = m.toFloat()
                for i in 0..<cols {
                    if scalar[i].isNaN { #expect(fast[i].isNaN, "\(type) element \(i)") } else {
                        #expect(fast[i].bitPattern == scalar[i].bitPattern, "\(type) element \(i): \(fast[i]) vs \(scalar[i])")
                    }
                }
            }
        }
    }

    /// The vector row decoders (AVX-512 or AVX2) give the table decoders' bits with block
    /// scales: every byte under E8M0 scales from tiny to overflowing (2^8 · scale past fp32
    /// takes the table path on AVX2) and NaN, and under float32 scales (subnormal, huge,
    /// arbitrary); blocks of 16, 32, 48 and 128 columns, K with a partial block and, for FP4,
    /// odd block starts.
    @Test(arguments: [StorageType.f8e4m3, .fp4e2m1])
    func vectorRowDecodersMatchScalarWithScales(type: StorageType) {
        let e8: [UInt8] = [0, 1, 100, 127, 134, 136, 246, 247, 250, 254, 255]
        let f32: [Float] = [1e-40, 3.7e-39, 0.013, 1.5, 2.9e36, 1e38, -0.75]
        for bc in [16, 32, 48, 128] where !(type == .fp4e2m1 && bc % 2 == 1) {
            for useF32 in [Int32(0), 1] {
                let K = 3 * bc + 10, rows = 11
                let rb = ck_row_bytes(type.kernelType, K)
                let w = (0..<(rows * rb)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ $0 / 256) }
                let ld = (K + bc - 1) / bc
                let e8s = (0..<(rows * ld)).map { e8[$0 % e8.count] }
                let f32s = (0..<(rows * ld)).map { f32[$0 % f32.count] }
                func decode() -> [Float] {
                    var out = [Float](repeating: 0, count: rows * K)
                    w.withUnsafeBytes { wp in
                        let decodeWith = { (data: UnsafeRawPointer) in
                            var sc = ck_scales(data: data, f32: useF32, ld: ld, block_rows: 1, block_cols: bc, row0: 0)
                            ck_decode_rows(wp.baseAddress!, type.kernelType, K, &sc, 0, rows, &out)
                        }
                        if useF32 == 1 { f32s.withUnsafeBytes { decodeWith($0.baseAddress!) } } else { e8s.withUnsafeBytes { decodeWith($0.baseAddress!) } }
                    }
                    return out
                }
                KernelSelection.forceScalar(true)
                let scalar = decode()
                KernelSelection.forceScalar(false)
                let fast = decode()
                for i in scalar.indices where !(scalar[i].isNaN && fast[i].isNaN) {
                    #expect(fast[i].bitPattern == scalar[i].bitPattern, "\(type) bc=\(bc) f32=\(useF32) element \(i): \(fast[i]) vs \(scalar[i])")
                }
            }
        }
    }

    @Test func everyE8M0CodePointMatchesTorch() throws {
        let g = try FPGolden.load()
        #expect(g.e8m0.count == 256)
        for b in 0..<256 {
            let ours = QuantizedFormats.e8m0(UInt8(b))
            if let want = g.e8m0[b] { #expect(Double(ours) == want, "e8m0 \(b)") } else { #expect(ours.isNaN) }
        }
    }

    @Test func everyE2M1CodePointMatchesTable() throws {
        let g = try FPGolden.load()
        #expect(g.e2m1.count == 16)
        for n in 0..<16 {
            let ours = QuantizedFormats.e2m1(UInt8(n))
            #expect(Double(ours) == g.e2m1[n] && (ours.sign == .minus) == (n >= 8), "e2m1 \(n)")
        }
        // Packing: element 2k is the low nibble of byte k.
        let packed: [UInt8] = [0x2F, 0x71]
        var out = [Float](repeating: 0, count: 4)
        packed.withUnsafeBytes { decode($0.baseAddress!, type: .fp4e2m1, count: 4, into: &out) }
        #expect(out == [-6, 1, 0.5, 6])
    }

    static let shapes: [(t: Int, n: Int, k: Int)] = [
        (1, 1, 32), (1, 3, 64), (3, 5, 96), (4, 130, 160), (5, 7, 288), (9, 129, 256), (2, 260, 32),
    ]

    @Test(arguments: [StorageType.f8e4m3, .fp4e2m1])
    func fastPathMatchesScalarTwinAndDequantizedReference(type: StorageType) throws {
        let g = try FPGolden.load()
        var shapes = Self.shapes
        if type == .f8e4m3 { shapes += [(3, 131, 133), (1, 17, 1), (6, 2, 129)] }  // FP8 allows any width
        for (t, n, k) in shapes {
            let q = QuantMatrix(type: type, rows: n, cols: k, seed: UInt64(n * 31 + k))
            let x = randomFloats(t * k, seed: UInt64(t * 7 + k))
            let wf = q.dequantized(g)
            for f32Scales in [false, true] {
                let (fast, ref): ([Float], [Float]) = q.withMatrix(f32Scales: f32Scales) { m in
                    KernelSelection.forceScalar(false)
                    let fast = m.apply(x, tokenCount: t)
                    KernelSelection.forceScalar(true)
                    let ref = m.apply(x, tokenCount: t)
                    KernelSelection.forceScalar(false)
                    #expect(m.toFloat() == wf, "decode \(type) \(n)x\(k)")
                    return (fast, ref)
                }
                for ti in 0..<t {
                    for ni in 0..<n {
                        var s: Double = 0, mag: Double = 0
                        for ki in 0..<k {
                            s += Double(x[ti * k + ki]) * Double(wf[ni * k + ki])
                            mag += abs(Double(x[ti * k + ki]) * Double(wf[ni * k + ki]))
                        }
                        let tol = Float(1e-6 * mag + 1e-30)
                        let i = ti * n + ni
                        #expect(abs(fast[i] - ref[i]) <= tol, "\(type) t=\(t) n=\(n) k=\(k): fast \(fast[i]) ref \(ref[i])")
                        #expect(abs(Double(ref[i]) - s) <= Double(tol), "\(type) t=\(t) n=\(n) k=\(k): ref \(ref[i]) exact \(s)")
                    }
                }
            }
        }
    }

    /// A token's outputs do not depend on the batch: one token alone (decoded in registers on
    /// AVX2) equals its row of a 3-token product (on AVX2 also decoded in registers, all tokens
    /// at once) and of a 20-token product (decoded rows, then the fp32 product; K = 2,080 in
    /// column passes of 1,024 on AVX-512, 512 on AVX2, the last one short) bit for bit, with
    /// E8M0 and float32 scales, awkward widths, an FP8 NaN code and a scale whose ×256 overflows
    /// (both go through the tables).
    @Test(arguments: [StorageType.f8e4m3, .fp4e2m1])
    func oneTokenEqualsItsRowOfABatchBitForBit(type: StorageType) throws {
        var shapes: [(n: Int, k: Int)] = [(1, 32), (5, 64), (7, 96), (130, 160), (9, 288), (33, 1024), (5, 2080)]
        if type == .f8e4m3 { shapes += [(6, 133), (3, 17), (4, 129)] }
        for (n, k) in shapes {
            var q = QuantMatrix(type: type, rows: n, cols: k, seed: UInt64(n * 17 + k))
            if type == .f8e4m3, n > 2 { q.bytes[2 * k + k / 2] = 0x7F }  // NaN in row 2
            if n > 4 {  // 2^127 for row 4's first block: ×256 overflows (FP8: table path)
                let i = (type == .f8e4m3 ? 0 : 4 * q.stride)
                q.scales[i] = 0xFE
                q.scaleFloats[i] = Float(pow(2.0, 127.0))
            }
            let x = randomFloats(20 * k, seed: UInt64(k + 3))
            for f32Scales in [false, true] {
                q.withMatrix(f32Scales: f32Scales) { m in
                    KernelSelection.forceScalar(false)
                    let few = m.apply(Array(x[0..<(3 * k)]), tokenCount: 3)
                    let many = m.apply(x, tokenCount: 20)
                    for t in 0..<3 {
                        let one = m.apply(Array(x[(t * k)..<((t + 1) * k)]), tokenCount: 1)
                        for r in 0..<n {
                            let a = one[r], b = few[t * n + r], c = many[t * n + r]
                            #expect(a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN), "\(type) \(n)x\(k) f32=\(f32Scales) t=\(t) row \(r): \(a) vs \(b) (3 tokens)")
                            #expect(a.bitPattern == c.bitPattern || (a.isNaN && c.isNaN), "\(type) \(n)x\(k) f32=\(f32Scales) t=\(t) row \(r): \(a) vs \(c) (20 tokens)")
                        }
                    }
                }
            }
        }
    }

    /// The AVX2 kernels, forced on this thread (also where AVX-512 exists): a 13-token product
    /// (decoded rows in blocks, then 4 × 2 register blocks over 512-column passes when K is a
    /// whole number of 16-column chunks above 512) equals each token alone (decoded in
    /// registers) bit for bit; odd row counts leave a last row outside the pairs, 13 tokens a
    /// last one outside the 4-token blocks, and K = 520 (FP8) is not cut into passes.
    @Test(arguments: [StorageType.f8e4m3, .fp4e2m1])
    func avx2BatchEqualsOneTokenBitForBit(type: StorageType) {
        let need = UInt32(CK_CPU_AVX2) | UInt32(CK_CPU_FMA)
        guard ck_cpu_features() & need == need else { return }
        _ = ck_force_impl(CK_IMPL_AVX2)
        defer { _ = ck_force_impl(CK_IMPL_AUTO) }
        #expect(String(cString: ck_impl_name()) == "avx2")
        var shapes: [(n: Int, k: Int)] = [(9, 1024), (7, 1056), (5, 2048), (6, 544)]
        if type == .f8e4m3 { shapes.append((4, 520)) }
        let T = 13
        for (n, k) in shapes {
            let q = QuantMatrix(type: type, rows: n, cols: k, seed: UInt64(n * 31 + k))
            let x = randomFloats(T * k, seed: UInt64(k + 11))
            var all = [Float](repeating: 0, count: T * n), one = [Float](repeating: 0, count: n)
            q.bytes.withUnsafeBytes { wp in
                q.scales.withUnsafeBytes { sp in
                    var s = ck_scales(data: sp.baseAddress!, f32: 0, ld: q.stride, block_rows: q.blockRows,
                                      block_cols: q.blockCols, row0: 0)
                    ck_matmul_scaled(x, k, T, k, wp.baseAddress!, type.kernelType, &s, n, &all, n)
                    x.withUnsafeBufferPointer { xp in
                        for t in 0..<T {
                            ck_matmul_scaled(xp.baseAddress! + t * k, k, 1, k, wp.baseAddress!, type.kernelType, &s, n, &one, n)
                            for r in 0..<n where one[r].bitPattern != all[t * n + r].bitPattern {
                                Issue.record("\(type) \(n)x\(k) token \(t) row \(r): \(one[r]) alone vs \(all[t * n + r]) in 13")
                            }
                        }
                    }
                }
            }
        }
    }

    /// One FP4 token (on AVX2, from 16 rows, x is prepared as x·2^e for a window of 8 scale
    /// exponents, each copy only where it is exact) equals its row of a 20-token product
    /// (decoded rows) bit for bit when x holds values some copies cannot carry exactly
    /// (subnormals, values near overflow, ±inf, NaN, signed zeros) and the scales spread over
    /// more exponents than the window (those blocks multiply the values by the scale instead);
    /// alone and in a wave with a row slice of the same matrix on the same x.
    @Test func fp4TokenWithExtremeInputsAndWideScales() {
        KernelThreads.start(count: 2)
        let (n, k) = (40, 256)
        func same(_ a: Float, _ b: Float) -> Bool { a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN) }
        // 2^-27 ... 2^8 (more exponents than the copies: the scaled-down copies meet the
        // subnormals), then 2^-3 ... 2^4 (the scaled-up copies meet the values near overflow)
        for (first, count) in [(100, 36), (124, 8)] {
            var q = QuantMatrix(type: .fp4e2m1, rows: n, cols: k, seed: 9)
            for i in q.scales.indices {
                q.scales[i] = UInt8(first + (i * 37) % count)
                q.scaleFloats[i] = Float(pow(2.0, Double(Int(q.scales[i]) - 127)))
            }
            let base = randomFloats(20 * k, seed: 41)
            var big = Array(base[0..<k]), odd = Array(base[0..<k])
            (big[5], big[40], big[77]) = (3e38, 3e38, -1e37)  // 40: block 1, 2^2 in the second pattern
            (odd[0], odd[9], odd[40], odd[41], odd[42]) = (.infinity, -.infinity, .nan, 0, -0.0)
            (odd[100], odd[101]) = (Float.leastNonzeroMagnitude, -Float.leastNormalMagnitude)
            let cases: [[Float]] = [Array(base[0..<k]), base[0..<k].map { $0 * 1e-39 }, big, odd]
            for (c, x1) in cases.enumerated() {
                q.withMatrix { m in
                    let one = m.apply(x1, tokenCount: 1)
                    let many = m.apply(x1 + Array(base[k...]), tokenCount: 20)
                    let wave = waveOutputs([m, m.rows(3..<n)], x: x1, ldx: k, tokens: 1)
                    for r in 0..<n {
                        let at = "scales from \(first), case \(c) row \(r): \(one[r]) alone vs"
                        #expect(same(one[r], many[r]), "\(at) \(many[r]) in 20 tokens")
                        #expect(same(one[r], wave[0][r]), "\(at) \(wave[0][r]) in a wave")
                        if r >= 3 { #expect(same(one[r], wave[1][r - 3]), "\(at) \(wave[1][r - 3]) as a slice in a wave") }
                    }
                    if c < 3 { #expect(one.contains { $0.isFinite && $0 != 0 }, "case \(c)") }  // case 3 holds ±inf
                }
            }
        }
    }

    /// FP8/FP4 products in a wave give each product's bits alone, 1 to 12 tokens: x prepared
    /// once per product when K is not a whole number of chunks (K = 300), shared by the next
    /// product on the same x, and read as it is otherwise (K = 256).
    @Test(arguments: [StorageType.f8e4m3, .fp4e2m1])
    func quantizedProductsInAWaveMatchThemAlone(type: StorageType) {
        KernelThreads.start(count: 2)
        for k in [300, 256] {
            let q = QuantMatrix(type: type, rows: 70, cols: k, seed: UInt64(k))
            let x = randomFloats(12 * k, seed: 5)
            for tokens in [1, 2, 3, 5, 12] {
                q.withMatrix { m in
                    let ms = [m, m.rows(5..<61)]
                    let solo = ms.map { $0.apply(Array(x[0..<(tokens * k)]), tokenCount: tokens) }
                    #expect(waveOutputs(ms, x: x, ldx: k, tokens: tokens) == solo, "\(type) K=\(k) tokens=\(tokens)")
                }
            }
        }
    }

    /// Row slices keep their scales: slices starting inside a 128-row FP8 block, FP4 slices.
    @Test(arguments: [StorageType.f8e4m3, .fp4e2m1])
    func rowSlicesUseTheRightScales(type: StorageType) throws {
        let g = try FPGolden.load()
        let (n, k) = (300, 160)
        let q = QuantMatrix(type: type, rows: n, cols: k, seed: 5)
        let wf = q.dequantized(g)
        let x = randomFloats(2 * k, seed: 8)
        for range in [0..<300, 100..<260, 129..<130, 250..<300] {
            q.withMatrix { m in
                let sub = m.rows(range)
                #expect(sub.toFloat() == Array(wf[(range.lowerBound * k)..<(range.upperBound * k)]))
                #expect(sub.row(0) == Array(wf[(range.lowerBound * k)..<((range.lowerBound + 1) * k)]))
                let y = sub.apply(x, tokenCount: 2)
                let full = m.apply(x, tokenCount: 2)
                for t in 0..<2 {
                    for r in 0..<range.count {
                        #expect(abs(y[t * range.count + r] - full[t * n + range.lowerBound + r]) <= 1e-5)
                    }
                }
            }
        }
    }
}

@Suite struct QuantizerTests {
    /// Encoding a decoded code gives the code back (every finite E4M3 code, every E2M1 nibble).
    @Test func encodersInvertTheDecoders() {
        for b in 0..<256 where b & 0x7F != 0x7F {
            let v = QuantizedFormats.e4m3(UInt8(b))
            let back = Quantizer.e4m3(v)
            #expect(back == UInt8(b) || (v == 0 && back & 0x7F == 0), "e4m3 0x\(String(b, radix: 16))")
        }
        for n in 0..<16 {
            let v = QuantizedFormats.e2m1(UInt8(n))
            #expect(Quantizer.e2m1(v) == UInt8(n) || (v == 0 && Quantizer.e2m1(v) & 7 == 0))
        }
        #expect(Quantizer.e4m3(1000) == 0x7E && Quantizer.e4m3(-1000) == 0xFE)  // saturate at ±448
        #expect(Quantizer.e2m1(2.5) == 4 && Quantizer.e2m1(5) == 6)  // ties to the even code: 2.5 → 2 (code 4), 5 → 4 (code 6)
    }

    @Test func blockQuantizersReconstructWithinHalfAStep() {
        let (rows, cols) = (200, 160)
        let w = randomFloats(rows * cols, seed: 11)
        let (codes, scales) = Quantizer.fp8Blocks(w, rows: rows, cols: cols)
        #expect(scales.count == 2 * 2)
        let (packed, s4) = Quantizer.fp4Groups(w, rows: rows, cols: cols)
        #expect(s4.count == rows * cols / 32)
        codes.withUnsafeBytes { cb in
            scales.withUnsafeBytes { sb in
                let m = WeightMatrix(rows: rows, cols: cols, type: .f8e4m3, base: cb.baseAddress!,
                                     scales: BlockScales(base: sb.baseAddress!, isFloat32: false, stride: 2, blockRows: 128, blockCols: 128), owner: nil)
                let back = m.toFloat()
                for i in 0..<w.count { #expect(abs(back[i] - w[i]) <= abs(w[i]) / 16 + 1e-3) }
            }
        }
        packed.withUnsafeBytes { pb in
            s4.withUnsafeBytes { sb in
                let m = WeightMatrix(rows: rows, cols: cols, type: .fp4e2m1, base: pb.baseAddress!,
                                     scales: BlockScales(base: sb.baseAddress!, isFloat32: false, stride: cols / 32, blockRows: 1, blockCols: 32), owner: nil)
                let back = m.toFloat()
                for r in 0..<rows {
                    for g in 0..<(cols / 32) {
                        let step = QuantizedFormats.e8m0(s4[r * (cols / 32) + g])  // largest gap between E2M1 values is 2·scale
                        for k in 0..<32 { let i = r * cols + g * 32 + k; #expect(abs(back[i] - w[i]) <= step * 1.0001) }
                    }
                }
            }
        }
    }
}
