// IndexerKernelTests.swift: the fused Lightning-Indexer top-k (kernels/indexer.c) against its
// scalar twin on awkward shapes: head counts and widths off the register blocks, partial key
// tiles, queries that see fewer than k entries, many threshold compactions, decode (key
// ranges split over threads) and exact ties.
import CKernels
import Tensors
import Testing

/// Keys laid out in the tiles ck_indexer_topk reads, and the row-major copy the checks use.
private struct TiledKeys {
    let d: Int
    let count: Int
    let storage: UnsafeMutablePointer<Float>
    var tiles: [UnsafePointer<Float>?] = []

    init(rows: [Float], d: Int) {
        let L = Int(CK_INDEXER_TILE)
        self.d = d
        count = rows.count / d
        let tileCount = (count + L - 1) / L
        storage = .allocate(capacity: max(1, tileCount * L * d))
        storage.initialize(repeating: .nan, count: max(1, tileCount * L * d))  // padding is never read
        for s in 0..<count {
            for i in 0..<d { storage[(s / L) * L * d + i * L + s % L] = rows[s * d + i] }
        }
        tiles = (0..<tileCount).map { UnsafePointer(storage + $0 * L * d) }
    }
}

private func referenceScores(q: [Float], w: [Float], t: Int, H: Int, d: Int, scale: Float, rows: [Float], n: Int) -> [Float] {
    var out = [Float](repeating: 0, count: n)
    rows.withUnsafeBufferPointer { rp in
        let keys = (0..<n).map { UnsafePointer<Float>?(rp.baseAddress! + $0 * d) }
        q.withUnsafeBufferPointer { qp in
            w.withUnsafeBufferPointer { wp in
                ck_ref_indexer_scores(qp.baseAddress! + t * H * d, H, d, wp.baseAddress! + t * H, scale, keys, n, &out)
            }
        }
    }
    return out
}

@Suite(.serialized) struct IndexerKernelTests {
    /// Runs both, and checks each query's picks position by position: the same entry, or (fp32
    /// rounding of a near-tie) entries whose reference scores are within 1e-5 relative.
    /// Returns how many queries' lists were identical.
    @discardableResult
    func check(T: Int, H: Int, d: Int, k: Int, visible: [Int32], rows: [Float], seed: UInt64) -> Int {
        let q = randomFloats(T * H * d, seed: seed)
        let w = randomFloats(T * H, seed: seed + 1)
        let keys = TiledKeys(rows: rows, d: d)
        defer { keys.storage.deallocate() }
        var fast = [Int32](repeating: -1, count: T * k), ref = fast
        ck_indexer_topk(q, w, T, H, d, 0.125, keys.tiles, visible, k, &fast)
        ck_ref_indexer_topk(q, w, T, H, d, 0.125, keys.tiles, visible, k, &ref)
        var identical = 0
        for t in 0..<T {
            let n = min(k, Int(visible[t]))
            let f = Array(fast[(t * k)..<(t * k + n)]), r = Array(ref[(t * k)..<(t * k + n)])
            if f == r { identical += 1; continue }
            let s = referenceScores(q: q, w: w, t: t, H: H, d: d, scale: 0.125, rows: rows, n: Int(visible[t]))
            #expect(Set(f).count == n, "query \(t): repeated picks")
            for j in 0..<n {
                let a = s[Int(f[j])], b = s[Int(r[j])]
                #expect(abs(a - b) <= 1e-5 * max(abs(b), 1e-3), "query \(t) pick \(j): \(f[j]) (\(a)) vs \(r[j]) (\(b))")
            }
        }
        return identical
    }

    @Test func prefillBlocksMatchTwinOnAwkwardShapes() {
        KernelThreads.start(count: 2)
        // Heads around the AVX2 scorer's blocks of 4 (4, 6 = 4 + 2, 9 = 4 + 4 + 1, 3 alone) and the
        // AVX-512 scorer's blocks of 8.
        for (H, d) in [(1, 1), (4, 64), (6, 33), (8, 64), (9, 63), (17, 16), (3, 130)] {
            for k in [1, 7, 64] {
                let T = 13
                let n = 700
                // Causal bounds as a chunk sees them (ratio 4 from position 2,000), plus the
                // edge cases: nothing visible, fewer than k, exactly k, one past a tile.
                var visible = (0..<T).map { Int32(min(n, (2000 + $0 + 1) / 4 - 300)) }
                visible[0] = 0
                visible[1] = Int32(min(k, n))
                visible[2] = Int32(max(0, k - 1))
                visible[3] = Int32(Int(CK_INDEXER_TILE) + 1)
                let rows = randomFloats(n * d, seed: UInt64(H * 100 + d))
                let same = check(T: T, H: H, d: d, k: k, visible: visible, rows: rows, seed: UInt64(k))
                #expect(same >= T - 2, "H=\(H) d=\(d) k=\(k): only \(same) of \(T) lists identical")
            }
        }
    }

    /// A prefill chunk's worth of queries: their lists are merged and ordered over the kernel
    /// threads, 16 queries a task (the last task partial).
    @Test func manyQueriesFinishOverTheThreads() {
        KernelThreads.start(count: 2)
        let (T, H, d, k, n) = (101, 8, 64, 16, 600)
        let visible = (0..<T).map { Int32(min(n, 40 + $0 * 6)) }
        let same = check(T: T, H: H, d: d, k: k, visible: visible, rows: randomFloats(n * d, seed: 21), seed: 22)
        #expect(same >= T - 3, "only \(same) of \(T) lists identical")
    }

    @Test func decodeSplitsKeysAndCompactsManyTimes() {
        KernelThreads.start(count: 2)
        // One query over 20,011 keys whose scores mostly rise: every compaction keeps
        // replacing the candidates (the worst case for the threshold).
        let d = 64, H = 8, n = 20_011
        var rows = randomFloats(n * d, seed: 5)
        for s in 0..<n { for i in 0..<d { rows[s * d + i] += Float(s) / Float(n) } }
        for k in [1, 64, 300] {
            let same = check(T: 1, H: H, d: d, k: k, visible: [Int32(n)], rows: rows, seed: 9)
            #expect(same == 1, "k=\(k)")
        }
    }

    @Test func equalScoresKeepTheLowerIds() {
        KernelThreads.start(count: 2)
        // Keys drawn from five vectors: scores tie exactly (the same arithmetic per lane), and
        // the choice among equals must be the twin's (lower ids first), bit for bit.
        let d = 32, H = 4, n = 3_001
        let protos = randomFloats(5 * d, seed: 77)
        var rows = [Float]()
        for s in 0..<n { rows += protos[((s * 7919) % 5 * d)..<((s * 7919) % 5 * d + d)] }
        let T = 9
        let visible = (0..<T).map { Int32(n - $0 * 333) }
        let same = check(T: T, H: H, d: d, k: 100, visible: visible, rows: rows, seed: 3)
        #expect(same == T)
    }

    @Test func scalarForcedRunsTheTwin() {
        let d = 16, H = 2, n = 100
        let rows = randomFloats(n * d, seed: 1)
        let keys = TiledKeys(rows: rows, d: d)
        defer { keys.storage.deallocate() }
        let q = randomFloats(H * d, seed: 2), w = randomFloats(H, seed: 3)
        var a = [Int32](repeating: 0, count: 10), b = a
        ck_force_impl(CK_IMPL_SCALAR)
        ck_indexer_topk(q, w, 1, H, d, 1, keys.tiles, [Int32(n)], 10, &a)
        ck_force_impl(CK_IMPL_AUTO)
        ck_ref_indexer_topk(q, w, 1, H, d, 1, keys.tiles, [Int32(n)], 10, &b)
        #expect(a == b)
    }
}
