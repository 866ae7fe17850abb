// ParallelKernelTests.swift: the threaded product equals the single-call kernel bit for bit
// (whatever the tiling, threads and token count), the pool runs every task once, and the
// gather-attention kernel matches its scalar twin.
import CKernels
import Tensors
import Testing

@Suite(.serialized) struct ParallelKernelTests {
    /// Three million tiny jobs back to back: every task of every job runs exactly once. Before
    /// the pool closed a finished job's state, a worker still reading it could claim a task of
    /// the next job under the old generation (1 to 34 bad jobs per 3 million here), and the
    /// caller could return before that job had finished (a rare wrong logit in a busy test run).
    @Test func poolRunsEveryTaskOfEveryJobExactlyOnce() {
        KernelThreads.start(count: 2)
        #expect(ck_pool_stress(3_000_000) == 0)
    }

    @Test(arguments: [StorageType.f32, .bf16, .f16])
    func tiledThreadedProductIsBitIdenticalAcrossBatchShapes(type: StorageType) {
        KernelThreads.start(count: 2)
        let (k, n) = (300, 203)  // odd sizes: partial tiles, K tails
        let wf = randomFloats(n * k, seed: 11)
        let stored: [UInt8] = switch type {
        case .f32: wf.withUnsafeBytes { Array($0) }
        case .bf16: wf.map(floatToBF16).withUnsafeBytes { Array($0) }
        case .f16: wf.map { Float16($0).bitPattern }.withUnsafeBytes { Array($0) }
        default: []
        }
        let x = randomFloats(37 * k, seed: 12)
        stored.withUnsafeBytes { raw in
            let w = WeightMatrix(rows: n, cols: k, type: type, base: raw.baseAddress!, owner: nil)
            let all = w.apply(x, tokenCount: 37)  // threaded, tiled, 37 rows at once
            // Each row alone, and rows in uneven groups: identical bits.
            for t in [0, 5, 36] {
                let one = w.apply(Array(x[(t * k)..<((t + 1) * k)]), tokenCount: 1)
                #expect(one == Array(all[(t * n)..<((t + 1) * n)]), "row \(t)")
            }
            let group = w.apply(Array(x[(6 * k)..<(13 * k)]), tokenCount: 7)
            #expect(group == Array(all[(6 * n)..<(13 * n)]))
            // And the scalar twin within a stated tolerance.
            var ref = [Float](repeating: 0, count: 37 * n)
            ck_ref_matmul(x, k, 37, k, raw.baseAddress!, type.kernelType, n, &ref, n)
            for i in 0..<ref.count { #expect(abs(ref[i] - all[i]) <= 1e-5 * Float(k).squareRoot()) }
        }
    }

    @Test func poolRunsEveryTaskExactlyOnce() {
        KernelThreads.start(count: 2)
        for count in [1, 2, 3, 17, 1000] {
            var hits = [Int](repeating: 0, count: count)
            hits.withUnsafeMutableBufferPointer { h in
                let base = h.baseAddress!
                KernelThreads.parallelFor(count) { i in base[i] += 1 }
            }
            #expect(hits.allSatisfy { $0 == 1 }, "\(count) tasks")
        }
    }

    @Test func gatherAttentionMatchesScalarTwin() {
        for (heads, dim, n) in [(4, 64, 9), (3, 20, 1), (16, 512, 37), (5, 48, 0), (2, 33, 130)] {
            let q = randomFloats(heads * dim, seed: UInt64(heads * 31 + dim))
            let keyStore = randomFloats(max(n, 1) * dim, seed: UInt64(n + 7))
            let sinks = randomFloats(heads, seed: 3).map { $0 * 2 }
            var fast = [Float](repeating: 9, count: heads * dim)
            var ref = [Float](repeating: 9, count: heads * dim)
            var scratch = [Float](repeating: 0, count: max(heads * n, 1))
            keyStore.withUnsafeBufferPointer { kp in
                let keys: [UnsafePointer<Float>?] = (0..<n).map { kp.baseAddress! + $0 * dim }
                ck_attend(q, heads, dim, keys, n, sinks, 0.125, &scratch, &fast)
                ck_ref_attend(q, heads, dim, keys, n, sinks, 0.125, &scratch, &ref)
            }
            for i in 0..<ref.count { #expect(abs(fast[i] - ref[i]) <= 1e-5, "H\(heads) d\(dim) n\(n) i\(i)") }
            if n == 0 { #expect(fast.allSatisfy { $0 == 0 }) }
        }
    }
}
