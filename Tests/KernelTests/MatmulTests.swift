// MatmulTests.swift: every fast kernel against its scalar twin on awkward sizes, and the
// number-format decoders against independent ones.
import CKernels
import Tensors
import Testing

/// Deterministic pseudo-random floats in [-1, 1).
func randomFloats(_ n: Int, seed: UInt64) -> [Float] {
    var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<n).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return Float(s >> 40) / Float(1 << 23) - 1
    }
}

@Suite struct MatmulTests {
    static let sizes: [(t: Int, k: Int, n: Int)] = [
        (1, 1, 1), (1, 15, 3), (3, 17, 5), (4, 16, 4), (5, 33, 7), (9, 100, 13), (1, 257, 9), (8, 64, 12),
    ]

    @Test(arguments: StorageType.denseTypes)
    func avx512MatchesScalarTwin(type: StorageType) {
        for (t, k, n) in Self.sizes {
            let x = randomFloats(t * k, seed: UInt64(t * 1000 + k))
            let wf = randomFloats(n * k, seed: UInt64(n * 7 + k))
            var stored: [UInt8] = []
            switch type {
            case .f32: stored = wf.withUnsafeBytes { Array($0) }
            case .bf16: stored = wf.map(floatToBF16).withUnsafeBytes { Array($0) }
            case .f16: stored = wf.map { Float16($0).bitPattern }.withUnsafeBytes { Array($0) }
            case .f8e4m3, .fp4e2m1: Issue.record("quantized types are tested in QuantizedTests")
            }
            var fast = [Float](repeating: 0, count: t * n)
            var ref = [Float](repeating: 0, count: t * n)
            stored.withUnsafeBytes { w in
                ck_matmul(x, k, t, k, w.baseAddress!, type.kernelType, n, &fast, n)
                ck_ref_matmul(x, k, t, k, w.baseAddress!, type.kernelType, n, &ref, n)
            }
            for i in 0..<(t * n) {
                // Different summation order only: ckernels.h's 1e-5·√K (inputs in [-1, 1)).
                #expect(abs(fast[i] - ref[i]) <= 1e-5 * Float(k).squareRoot(), "t=\(t) k=\(k) n=\(n) i=\(i): \(fast[i]) vs \(ref[i])")
            }
        }
    }

    /// A block of tokens gives each token the bits it gets alone (on AVX2 machines 4 × 2, 4 × 1,
    /// 2 × 2 and 2 × 1 blocks against the 1 × 4 decode blocks; on AVX-512 machines their own blocks). Shapes with
    /// remainders everywhere: T odd, K off 16, N odd, a strided y.
    @Test(arguments: StorageType.denseTypes)
    func tokenBlocksAreBitIdenticalToSingleTokens(type: StorageType) {
        for (t, k, n) in [(6, 16, 2), (7, 100, 67), (13, 256, 129), (8, 1100, 5), (50, 530, 70), (4, 513, 9)] {
            let x = randomFloats(t * k, seed: UInt64(t * 31 + k))
            let wf = randomFloats(n * k, seed: UInt64(n * 13 + k))
            let stored: [UInt8] = switch type {
            case .f32: wf.withUnsafeBytes { Array($0) }
            case .bf16: wf.map(floatToBF16).withUnsafeBytes { Array($0) }
            case .f16: wf.map { Float16($0).bitPattern }.withUnsafeBytes { Array($0) }
            case .f8e4m3, .fp4e2m1: []
            }
            let ldy = n + 3
            var block = [Float](repeating: -7, count: t * ldy), single = [Float](repeating: 0, count: n)
            stored.withUnsafeBytes { w in
                ck_matmul(x, k, t, k, w.baseAddress!, type.kernelType, n, &block, ldy)
                for ti in 0..<t {
                    x.withUnsafeBufferPointer { xp in ck_matmul(xp.baseAddress! + ti * k, k, 1, k, w.baseAddress!, type.kernelType, n, &single, n) }
                    let row = Array(block[(ti * ldy)..<(ti * ldy + n)])
                    #expect(row.map(\.bitPattern) == single.map(\.bitPattern), "\(type) t=\(t) k=\(k) n=\(n): token \(ti) differs")
                    #expect(block[(ti * ldy + n)..<(ti * ldy + ldy)].allSatisfy { $0 == -7 }, "y padding written")
                }
            }
        }
    }

    @Test func stridedRowsAndSubmatrices() {
        // y rows written with a stride, x read with a stride, W a row slice.
        let (t, k, n) = (5, 19, 6)
        let x = randomFloats(t * (k + 3), seed: 3)
        let w = WeightMatrix(rows: n + 2, cols: k, values: randomFloats((n + 2) * k, seed: 4))
        let sub = w.rows(1..<(n + 1))
        var y = [Float](repeating: -7, count: t * (n + 4))
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in sub.apply(xp.baseAddress!, ldx: k + 3, tokenCount: t, into: yp.baseAddress!, ldy: n + 4) }
        }
        let wf = w.toFloat()
        for ti in 0..<t {
            for ni in 0..<n {
                var s: Float = 0
                for ki in 0..<k { s += x[ti * (k + 3) + ki] * wf[(ni + 1) * k + ki] }
                #expect(abs(y[ti * (n + 4) + ni] - s) <= 1e-5 * Float(k).squareRoot())
            }
            for pad in n..<(n + 4) { #expect(y[ti * (n + 4) + pad] == -7) }
        }
    }

    @Test func dotAndAxpyMatchTwins() {
        for n in [1, 7, 16, 31, 33, 100, 513] {
            let a = randomFloats(n, seed: UInt64(n)), b = randomFloats(n, seed: UInt64(n + 1))
            #expect(abs(ck_dot_f32(a, b, n) - ck_ref_dot_f32(a, b, n)) <= 1e-5 * Float(n).squareRoot())
            var y1 = b, y2 = b
            ck_axpy_f32(0.37, a, &y1, n)
            ck_ref_axpy_f32(0.37, a, &y2, n)
            for i in 0..<n { #expect(abs(y1[i] - y2[i]) <= 1e-6) }
        }
    }

    @Test func scalarFallbackIsSelectable() {
        KernelSelection.forceScalar(true)
        #expect(KernelSelection.implementationName == "scalar")
        KernelSelection.forceScalar(false)
        if KernelSelection.cpuFeatures.contains("avx512bw") && KernelSelection.cpuFeatures.contains("avx512vl") {
            #expect(KernelSelection.implementationName == "avx512")
        }
    }
}

@Suite struct NumberFormatTests {
    /// Every IEEE half code point against Swift's own Float16 (an independent decoder).
    @Test func f16AllCodePoints() {
        for bits in 0...UInt16.max {
            let ours = f16ToFloat(bits)
            let theirs = Float(Float16(bitPattern: bits))
            if theirs.isNaN { #expect(ours.isNaN) } else { #expect(ours.bitPattern == theirs.bitPattern, "0x\(String(bits, radix: 16))") }
        }
    }

    /// bf16 is the top half of a float: decoding, and round-to-nearest-even encoding.
    @Test func bf16RoundTrip() {
        for bits in stride(from: 0, through: Int(UInt16.max), by: 1) {
            let f = bf16ToFloat(UInt16(bits))
            #expect(f.bitPattern == UInt32(bits) << 16)
            if !f.isNaN { #expect(floatToBF16(f) == UInt16(bits)) }
        }
        #expect(floatToBF16(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie to even, down
        #expect(floatToBF16(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie to even, up
        #expect(floatToBF16(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(bf16ToFloat(floatToBF16(.nan)).isNaN)
    }
}

