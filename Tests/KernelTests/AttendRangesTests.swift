// AttendRangesTests.swift: block attention over a shared key list (kernels/attend_block.c)
// against its scalar twin (ck_ref_attend per query over the gathered visible keys): awkward
// query counts, head counts and widths, empty ranges, ranges off the blocks, one key, decode
// (keys split over threads) and a softmax spike.
import CKernels
import Tensors
import Testing

/// How each query's two ranges are drawn (E compressed entries, then windows of W keys).
private enum RangeMode: CaseIterable {
    case both, emptyFirst, emptySecond, someSeeNothing, oneKey, windowOnly
}

private func makeRanges(_ mode: RangeMode, T: Int, E: Int, W: Int) -> (n: Int, ranges: [Int32]) {
    var r = [Int32]()
    let n = mode == .oneKey ? 1 : (mode == .windowOnly ? 0 : E) + T + W - 1
    for t in 0..<T {
        let vis = E * (t + 1) / T, w0 = E + t, w1 = E + t + W
        switch mode {
        case .both: r += [0, vis, w0, w1].map { Int32($0) }
        case .emptyFirst: r += [0, 0, w0, w1].map { Int32($0) }
        case .emptySecond: r += [0, vis, w0, w0].map { Int32($0) }
        // Odd queries see nothing at all; even ones a first range that starts off 0.
        case .someSeeNothing: r += t % 2 == 1 ? [0, 0, 0, 0] : [3, Int32(max(vis, 3)), Int32(w0), Int32(w1)]
        case .oneKey: r += [0, 1, 1, 1]
        case .windowOnly: r += [0, 0, Int32(t), Int32(t + W)]
        }
    }
    return (n, r)
}

@Suite(.serialized) struct AttendRangesTests {
    /// Runs both on `T` queries and checks every output within 1e-5 (and finite). With
    /// `spike`, query 0's head 0 is scaled by it and meets one key head-on (a score of about
    /// spike · Σ|q| · scale, far past e^88): the output must be that key.
    func check(T: Int, H: Int, d: Int, n: Int, ranges: [Int32], seed: UInt64, spike: Float = 0,
               _ what: String = "") {
        var q = randomFloats(T * H * d, seed: seed)
        var keyStore = randomFloats(max(n, 1) * d, seed: seed + 1)
        let sinks = randomFloats(H, seed: seed + 2).map { $0 * 2 }
        let spiked = ranges[0] < ranges[1] ? Int(ranges[0]) : Int(ranges[2])
        if spike != 0 {
            for i in 0..<d {
                keyStore[spiked * d + i] = q[i] > 0 ? 1 : -1
                q[i] *= spike
            }
        }
        var fast = [Float](repeating: 9, count: T * H * d)
        var ref = [Float](repeating: 7, count: T * H * d)
        keyStore.withUnsafeBufferPointer { kp in
            let keys: [UnsafePointer<Float>?] = (0..<max(n, 1)).map { kp.baseAddress! + $0 * d }
            ck_attend_ranges(q, T, H, d, keys, n, ranges, sinks, 0.125, &fast)
            ck_ref_attend_ranges(q, T, H, d, keys, n, ranges, sinks, 0.125, &ref)
        }
        let bad = (0..<ref.count).filter { !(abs(fast[$0] - ref[$0]) <= 1e-5) }
        let first = bad.first.map { i in "at \(i): \(fast[i]) vs \(ref[i])" } ?? ""
        #expect(bad.isEmpty, "\(what) T\(T) H\(H) d\(d) n\(n): \(bad.count) outputs off \(first)")
        // A query that sees no key gets 0, as ck_attend with no keys.
        for t in 0..<T where ranges[4 * t] >= ranges[4 * t + 1] && ranges[4 * t + 2] >= ranges[4 * t + 3] {
            #expect(fast[(t * H * d)..<((t + 1) * H * d)].allSatisfy { $0 == 0 }, "\(what) query \(t) sees nothing")
        }
        if spike != 0 && d >= 20 {  // (a few dims leave other keys too close to the spike)
            for i in 0..<d { #expect(abs(fast[i] - keyStore[spiked * d + i]) <= 1e-4, "\(what) spike dim \(i)") }
        }
    }

    @Test func matchesTwinOnAwkwardShapes() {
        KernelThreads.start(count: 2)
        for T in [1, 3, 5, 17] {
            for H in [1, 3, 8] {
                for d in [4, 20, 128] {
                    for mode in RangeMode.allCases {
                        let (n, ranges) = makeRanges(mode, T: T, E: 150, W: 37)
                        check(T: T, H: H, d: d, n: n, ranges: ranges, seed: UInt64(T * 1000 + H * 10 + d), "\(mode)")
                    }
                }
            }
        }
    }

    @Test func manyQueryBlocksWithSlidingWindows() {
        KernelThreads.start(count: 2)
        // Query blocks of several queries, each over its compressed entries and a 128-key window
        // (the intended use), the union of a block's ranges walked in several key blocks.
        for (T, H, d) in [(70, 8, 64), (41, 3, 20)] {
            let (n, ranges) = makeRanges(.both, T: T, E: 700, W: 128)
            check(T: T, H: H, d: d, n: n, ranges: ranges, seed: 5, "both")
            let (nw, windows) = makeRanges(.windowOnly, T: T, E: 0, W: 128)
            check(T: T, H: H, d: d, n: nw, ranges: windows, seed: 6, "window")
        }
    }

    @Test func decodeSplitsKeysOverThreads() {
        KernelThreads.start(count: 2)
        // Few queries over many keys: the keys are cut into segments, merged after.
        let n = 5_000
        check(T: 1, H: 8, d: 128, n: n, ranges: [0, 4_900, 4_900, 5_000], seed: 11, "decode")
        check(T: 2, H: 3, d: 20, n: n, ranges: [0, 4_000, 4_900, 5_000, 0, 0, 10, 4_999], seed: 12, "decode T2")
        check(T: 1, H: 1, d: 4, n: n, ranges: [17, 3_000, 3_001, 3_002], seed: 13, "decode H1")
    }

    /// One query with few keys has its heads split over the threads (decode): each head's bits
    /// are those it gets beside a second query with the same ranges in one block (no split), for 16 and 20 heads
    /// (groups of whole row vectors, a short last group).
    @Test func decodeHeadSplitIsBitIdenticalToTheBlock() {
        KernelThreads.start(count: 2)
        for (H, d, n) in [(16, 128, 200), (20, 64, 130), (16, 512, 40)] {
            let q = randomFloats(H * d, seed: UInt64(H + d)), other = randomFloats(H * d, seed: 5)
            let keyStore = randomFloats(n * d, seed: UInt64(n))
            let sinks = randomFloats(H, seed: 9).map { $0 * 2 }
            let one: [Int32] = [0, Int32(n / 3), Int32(n / 2), Int32(n)]
            var single = [Float](repeating: 0, count: H * d), pair = [Float](repeating: 0, count: 2 * H * d)
            keyStore.withUnsafeBufferPointer { kp in
                let keys: [UnsafePointer<Float>?] = (0..<n).map { kp.baseAddress! + $0 * d }
                ck_attend_ranges(q, 1, H, d, keys, n, one, sinks, 0.125, &single)
                ck_attend_ranges(q + other, 2, H, d, keys, n, one + one, sinks, 0.125, &pair)  // the same key blocks
            }
            let differ = (0..<(H * d)).filter { single[$0].bitPattern != pair[$0].bitPattern }.count
            #expect(differ == 0, "H\(H) d\(d) n\(n): \(differ) outputs differ")
        }
    }

    /// ck_attend (a query over its own key list) splits heads the same way: each head's bits are
    /// those of attending with that head alone.
    @Test func attendHeadSplitIsBitIdenticalToOneHeadAtATime() {
        KernelThreads.start(count: 2)
        for (H, d, n) in [(16, 128, 60), (13, 64, 200)] {
            let q = randomFloats(H * d, seed: UInt64(H * d)), keyStore = randomFloats(n * d, seed: 3)
            let sinks = randomFloats(H, seed: 4)
            var all = [Float](repeating: 0, count: H * d), alone = [Float](repeating: 0, count: H * d)
            var scratch = [Float](repeating: 0, count: H * n)
            keyStore.withUnsafeBufferPointer { kp in
                let keys: [UnsafePointer<Float>?] = (0..<n).map { kp.baseAddress! + $0 * d }
                ck_attend(q, H, d, keys, n, sinks, 0.1, &scratch, &all)
                for h in 0..<H {
                    q.withUnsafeBufferPointer { qp in
                        sinks.withUnsafeBufferPointer { sp in
                            alone.withUnsafeMutableBufferPointer { op in
                                ck_attend(qp.baseAddress! + h * d, 1, d, keys, n, sp.baseAddress! + h, 0.1, &scratch, op.baseAddress! + h * d)
                            }
                        }
                    }
                }
            }
            let differ = (0..<(H * d)).filter { all[$0].bitPattern != alone[$0].bitPattern }.count
            #expect(differ == 0, "H\(H) d\(d) n\(n): \(differ) outputs differ")
        }
    }

    @Test func softmaxSpikeDoesNotOverflow() {
        KernelThreads.start(count: 2)
        let (n, ranges) = makeRanges(.both, T: 5, E: 150, W: 37)
        for (H, d) in [(1, 4), (8, 128), (3, 20)] {
            check(T: 5, H: H, d: d, n: n, ranges: ranges, seed: 21, spike: 200, "spike")
        }
        // The same in a decode split: one segment holds the spike, the merge must scale the rest away.
        check(T: 1, H: 8, d: 128, n: 5_000, ranges: [0, 4_900, 4_900, 5_000], seed: 22, spike: 300, "decode spike")
    }

    @Test func scalarForcedRunsTheTwin() {
        let (n, ranges) = makeRanges(.both, T: 3, E: 50, W: 9)
        let H = 2, d = 8
        let q = randomFloats(3 * H * d, seed: 1), keyStore = randomFloats(n * d, seed: 2), sinks = [Float](repeating: 0.5, count: H)
        var a = [Float](repeating: 0, count: 3 * H * d), b = a
        keyStore.withUnsafeBufferPointer { kp in
            let keys: [UnsafePointer<Float>?] = (0..<n).map { kp.baseAddress! + $0 * d }
            ck_force_impl(CK_IMPL_SCALAR)
            ck_attend_ranges(q, 3, H, d, keys, n, ranges, sinks, 0.125, &a)
            ck_force_impl(CK_IMPL_AUTO)
            ck_ref_attend_ranges(q, 3, H, d, keys, n, ranges, sinks, 0.125, &b)
        }
        #expect(a == b)
    }

    /// Stored (bf16, fp8) compressed entries decoded by key block inside the kernel give the
    /// same bits as decoding them all first and attending over fp32 keys: prefill blocks and a
    /// decode split over threads, with the window's fp32 keys after the coded ones; the scalar
    /// path too.
    @Test(arguments: [CK_KV_BF16, CK_KV_FP8])
    func codedKeysMatchDecodedKeys(format: ck_kv_format) {
        KernelThreads.start(count: 2)
        let H = 8, d = 128, rope = 32
        for (T, E, W, impl) in [(7, 300, 37, CK_IMPL_AUTO), (1, 4_000, 128, CK_IMPL_AUTO), (3, 50, 9, CK_IMPL_SCALAR)] {
            let (n, ranges) = makeRanges(.both, T: T, E: E, W: W)
            let q = randomFloats(T * H * d, seed: 31), values = randomFloats(n * d, seed: 32)
            let sinks = randomFloats(H, seed: 33)
            let stride = ck_kv_entry_bytes(format, d, rope)
            var stored = [UInt8](repeating: 0, count: E * stride)
            var decoded = values
            stored.withUnsafeMutableBytes { sp in
                for e in 0..<E {
                    ck_kv_store(format, Array(values[(e * d)..<((e + 1) * d)]), d, rope, sp.baseAddress! + e * stride)
                    decoded.withUnsafeMutableBufferPointer { ck_kv_load(format, sp.baseAddress! + e * stride, d, rope, $0.baseAddress! + e * d) }
                }
            }
            var coded = [Float](repeating: 1, count: T * H * d), plain = [Float](repeating: 2, count: T * H * d)
            stored.withUnsafeBytes { sp in
                decoded.withUnsafeBufferPointer { dp in
                    values.withUnsafeBufferPointer { vp in
                        let raw: [UnsafeRawPointer?] = (0..<n).map { k in k < E ? sp.baseAddress! + k * stride : UnsafeRawPointer(vp.baseAddress! + k * d) }
                        let floats: [UnsafePointer<Float>?] = (0..<n).map { k in k < E ? dp.baseAddress! + k * d : vp.baseAddress! + k * d }
                        ck_force_impl(impl)
                        ck_attend_ranges_kv(q, T, H, d, raw, n, format, E, rope, ranges, sinks, 0.125, &coded)
                        ck_attend_ranges(q, T, H, d, floats, n, ranges, sinks, 0.125, &plain)
                        ck_force_impl(CK_IMPL_AUTO)
                    }
                }
            }
            #expect(coded == plain, "T\(T) E\(E): \(zip(coded, plain).filter { $0 != $1 }.count) outputs differ")
        }
    }
}
