// ShardedExpertExecutor.swift: routed experts spread over the ranks of an mpirun job, run in
// waves whose partial outputs travel (non-blocking all-gather) while the next wave computes.
//
// Every rank runs the dense part of the model on the same tokens, so every rank holds the same
// routing. Rank r computes only the experts it owns (placement), cut into waves; after each
// wave it starts an MPI_Iallgatherv of that wave's partial rows (only the tokens the wave
// touched) and goes on with the next wave; after the last one it computes the caller's
// `alongside` work (the model's shared expert, replicated on every rank) while the last
// exchange travels. At the end every rank sums all ranks' partials in
// one fixed order (rank, then wave), so all ranks hold bit-identical MoE outputs — the
// invariant that keeps their routing, and therefore the whole replicated forward, in step.
// A digest of the routing travels with every wave and is checked, so ranks that diverge stop
// with an error instead of summing unrelated partials.
import CKernels
import Dispatch
import ModelRuntime
import Tensors

/// Communication of one MoE layer, summed over calls.
public struct LayerCommStats: Sendable, Equatable {
    /// run() calls (one per forward pass).
    public var calls = 0
    /// Collectives started (waves that ran).
    public var waves = 0
    /// Bytes this rank sent (partials and digests).
    public var bytesSent = 0
    /// Bytes this rank received from the other ranks.
    public var bytesReceived = 0
    /// Seconds from the first collective's start to the last one's completion.
    public var commSeconds = 0.0
    /// Seconds spent blocked in MPI_Wait after the last wave: waiting for slower ranks plus
    /// communication not hidden by compute.
    public var exposedSeconds = 0.0
    /// The part of `exposedSeconds` after every rank had started its last wave's all-gather:
    /// communication no compute hid. Uses the senders' monotonic clocks, so it is exact on one
    /// host (shared memory or TCP over loopback) and approximate between hosts.
    public var unhiddenSeconds = 0.0
    /// Seconds computing this rank's experts.
    public var computeSeconds = 0.0
    /// Seconds of the caller's `alongside` work done while the last wave was in flight.
    public var alongsideSeconds = 0.0

    public init() {}

    public static func + (a: LayerCommStats, b: LayerCommStats) -> LayerCommStats {
        var s = a
        s.calls += b.calls
        s.waves += b.waves
        s.bytesSent += b.bytesSent
        s.bytesReceived += b.bytesReceived
        s.commSeconds += b.commSeconds
        s.exposedSeconds += b.exposedSeconds
        s.unhiddenSeconds += b.unhiddenSeconds
        s.computeSeconds += b.computeSeconds
        s.alongsideSeconds += b.alongsideSeconds
        return s
    }
}

/// Runs this rank's share of the routed experts and combines every rank's share.
public final class ShardedExpertExecutor: ExpertExecutor, @unchecked Sendable {
    /// `[layer][expert]` views of every expert; only this rank's are ever read.
    public let experts: [[ExpertWeights]]
    public let activation: SwiGLU
    public let placement: ExpertPlacement
    public let world: MPIWorld
    /// The most waves a layer is cut into (see `waves(rows:)`); 1 turns pipelining off.
    public var maxWaves: Int
    /// Keeps the collectives moving while the next wave computes; nil: they move only at the
    /// MPI_Test between waves and in the final wait.
    public var progress: ProgressThread?
    /// Runs the caller's `alongside` work (the shared expert) while the last wave's all-gather
    /// is in flight; false: after the wait, as an executor without communication would (the
    /// bench's unpipelined baseline).
    public var overlapsAlongside = true
    /// `[layer]`, accumulated by `run`.
    public private(set) var stats: [LayerCommStats]
    /// `[layer]`, one per call since the last `resetStats`: when this rank would have been ready
    /// for the exchange's result if communication cost nothing (last wave posted, `alongside`
    /// done, less the time spent in MPI calls posting and testing the waves) and when it had it
    /// (monotonic ns).
    public private(set) var callMarks: [[(ready: UInt64, done: UInt64)]]

    /// - Parameters:
    ///   - experts: `[layer][expert]`, as the model loaded them (mapped, untouched).
    ///   - maxWaves: the most waves per layer (≥ 1).
    public init(experts: [[ExpertWeights]], activation: SwiGLU, placement: ExpertPlacement, world: MPIWorld, maxWaves: Int) {
        precondition(placement.rankCount == world.size && placement.owner.map(\.count) == experts.map(\.count))
        precondition(maxWaves >= 1)
        self.experts = experts
        self.activation = activation
        self.placement = placement
        self.world = world
        self.maxWaves = maxWaves
        stats = Array(repeating: LayerCommStats(), count: experts.count)
        callMarks = Array(repeating: [], count: experts.count)
    }

    public func expertCount(layer: Int) -> Int { experts[layer].count }

    public func resetStats() {
        stats = Array(repeating: LayerCommStats(), count: experts.count)
        callMarks = Array(repeating: [], count: experts.count)
    }

    /// Communication on the critical path of one call, from every rank's marks of it (same
    /// host: one monotonic clock): how much later the last rank to finish had every partial
    /// than the last rank to be ready was ready for them. A rank that waits while a slower rank
    /// still computes is not delayed by the network; this is the delay the exchange adds.
    public static func criticalNanoseconds(ready: [UInt64], done: [UInt64]) -> UInt64 {
        let r = ready.max() ?? 0, d = done.max() ?? 0
        return d > r ? d - r : 0
    }

    /// Bytes of this rank's routed-expert weights over all layers.
    public var ownedExpertBytes: Int {
        var total = 0
        for (l, layer) in experts.enumerated() {
            for e in placement.experts(layer: l, rank: world.rank) {
                let x = layer[e]
                total += x.w1.byteCount + x.w3.byteCount + x.w2.byteCount
            }
        }
        return total
    }

    /// Resident bytes (this process's page table) of the routed experts this rank owns and of
    /// those it does not; nil when /proc/self/pagemap is unreadable.
    public func residentExpertBytes() -> (own: Int, others: Int)? {
        var own: [(base: UnsafeRawPointer, count: Int)] = []
        var others: [(base: UnsafeRawPointer, count: Int)] = []
        for (l, layer) in experts.enumerated() {
            for (e, x) in layer.enumerated() {
                let ranges = [x.w1, x.w3, x.w2].map { (base: $0.base, count: $0.byteCount) }
                if placement.owner[l][e] == world.rank { own += ranges } else { others += ranges }
            }
        }
        guard let o = ResidentPages.bytes(own), let t = ResidentPages.bytes(others) else { return nil }
        return (o, t)
    }

    /// The wave rule: as many waves as the busiest rank has experts to run, at most
    /// `maxWaves`. Each rank cuts its own experts into that many waves of about equal rows.
    static func waveCount(usedExperts: [Int], maxWaves: Int) -> Int { max(1, min(maxWaves, usedExperts.max() ?? 1)) }

    /// Wave of each expert in `rows` (rows routed to each of a rank's used experts, in expert
    /// order): contiguous groups of about total/W rows.
    static func waveOf(rows: [Int], waveCount w: Int) -> [Int] {
        let total = rows.reduce(0, +)
        var before = 0
        return rows.map { n in
            defer { before += n }
            return total == 0 ? 0 : min(w - 1, before * w / total)
        }
    }

    public func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize d: Int, routing: ExpertRouting,
        output: UnsafeMutablePointer<Float>
    ) {
        run(layer: layer, input: input, hiddenSize: d, routing: routing, output: output) {}
    }

    /// The experts in waves, each wave's all-gather posted as soon as it is computed; then
    /// `alongside` (the shared expert: no data shared with the exchange) while the last ones
    /// travel; then the wait and the fixed-order sum.
    public func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize d: Int, routing: ExpertRouting,
        output: UnsafeMutablePointer<Float>, alongside: () -> Void
    ) {
        let T = routing.tokenCount, K = routing.topK, P = world.size, me = world.rank
        let owner = placement.owner[layer]
        output.update(repeating: 0, count: T * d)
        let (buckets, digest) = Self.buckets(routing, expertCount: owner.count)
        let (W, touched, mine) = plan(owner: owner, buckets: buckets, tokenCount: T, topK: K)

        // One buffer: per wave, the send area, then every rank's receive area (digest + rows).
        let header = 4  // the routing digest and the sender's post time (UInt64s) as four floats' bits
        let rankArea = (0..<P).map { r in (0..<W).map { w in header + touched[r][w].count * d } }
        let waveArea = (0..<W).map { w in rankArea.indices.reduce(0) { $0 + rankArea[$1][w] } }
        let totalFloats = waveArea.reduce(0, +) + (0..<W).reduce(0) { $0 + rankArea[me][$1] }
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(totalFloats, 1))
        defer { buffer.deallocate() }
        var requests: [MPIWorld.Request] = []
        var receiveBase: [Int] = []
        var cursor = 0
        var st = stats[layer]
        st.calls += 1
        let digestBits = digest.value
        var commStart: UInt64 = 0
        var mpiNanoseconds: UInt64 = 0  // in MPI calls before the wait: sending is work too

        for w in 0..<W {
            let send = buffer + cursor
            cursor += rankArea[me][w]
            receiveBase.append(cursor)
            let receive = buffer + cursor
            cursor += waveArea[w]
            // Compute this rank's wave: gather, two matrix-product waves, combine into rows.
            let t0 = DispatchTime.now().uptimeNanoseconds
            withUnsafeBytes(of: digestBits) { (send.raw).copyMemory(from: $0.baseAddress!, byteCount: 8) }
            let rows = send + header
            rows.update(repeating: 0, count: touched[me][w].count * d)
            computeWave(layer: layer, mine[w], buckets: buckets, topK: K, touched: touched[me][w], input: input, d: d, routing: routing, rows: rows)
            st.computeSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            // Start its all-gather and let the earlier ones progress.
            var offsets: [Int32] = []
            var counts: [Int32] = []
            var o = 0
            for r in 0..<P {
                offsets.append(Int32(o * 4))
                counts.append(Int32(rankArea[r][w] * 4))
                o += rankArea[r][w]
            }
            let posted = DispatchTime.now().uptimeNanoseconds
            if w == 0 { commStart = posted }
            withUnsafeBytes(of: posted) { (send.raw + 8).copyMemory(from: $0.baseAddress!, byteCount: 8) }
            requests.append(world.startAllGather(
                send: UnsafeRawPointer(send), sendBytes: rankArea[me][w] * 4, receive: UnsafeMutableRawPointer(receive),
                counts: counts, offsets: offsets))
            for i in requests.indices { world.test(&requests[i]) }
            mpiNanoseconds += DispatchTime.now().uptimeNanoseconds - posted
            progress?.begin()
            st.waves += 1
            st.bytesSent += rankArea[me][w] * 4 * (P - 1)
            st.bytesReceived += (waveArea[w] - rankArea[me][w]) * 4
        }
        if overlapsAlongside {
            let t = DispatchTime.now().uptimeNanoseconds
            alongside()
            st.alongsideSeconds += Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
        }
        progress?.end()
        let t1 = DispatchTime.now().uptimeNanoseconds
        for i in requests.indices { world.wait(&requests[i]) }
        let t2 = DispatchTime.now().uptimeNanoseconds
        st.exposedSeconds += Double(t2 - t1) / 1e9
        st.commSeconds += Double(t2 - commStart) / 1e9
        let lastPost = Self.lastPost(after: t1, receive: buffer + receiveBase[W - 1], areas: rankArea.map { $0[W - 1] })
        st.unhiddenSeconds += t2 > lastPost ? Double(t2 - lastPost) / 1e9 : 0
        stats[layer] = st
        callMarks[layer].append((t1 - mpiNanoseconds, t2))

        sumInOrder(
            layer: layer, receive: receiveBase.map { buffer + $0 }, rankArea: rankArea, touched: touched, header: header,
            digest: digestBits, output: output, d: d)
        if !overlapsAlongside { alongside() }
    }

    /// (token, slot) pairs by expert, in token order (every rank computes the same), and the
    /// routing's digest.
    private static func buckets(_ routing: ExpertRouting, expertCount: Int) -> ([[Int]], FNV1a) {
        var buckets = [[Int]](repeating: [], count: expertCount)
        var digest = FNV1a()
        for s in 0..<(routing.tokenCount * routing.topK) {
            let e = Int(routing.experts[s])
            precondition(e >= 0 && e < expertCount, "expert id out of range")
            buckets[e].append(s)
            digest.add(UInt64(UInt32(bitPattern: routing.experts[s])) << 32 | UInt64(routing.weights[s].bitPattern))
        }
        return (buckets, digest)
    }

    /// The call's waves: their count, the tokens each (rank, wave) touches (ascending), and this
    /// rank's experts per wave.
    private func plan(owner: [Int], buckets: [[Int]], tokenCount T: Int, topK K: Int) -> (Int, [[[Int]]], [[Int]]) {
        let P = world.size, me = world.rank
        let used = (0..<P).map { r in owner.indices.filter { owner[$0] == r && !buckets[$0].isEmpty } }
        let W = Self.waveCount(usedExperts: used.map(\.count), maxWaves: maxWaves)
        var touched = [[[Int]]](repeating: [[Int]](repeating: [], count: W), count: P)  // [rank][wave] tokens, ascending
        var mine = [[Int]](repeating: [], count: W)  // my experts per wave
        for r in 0..<P {
            let waves = Self.waveOf(rows: used[r].map { buckets[$0].count }, waveCount: W)
            var seen = [Bool](repeating: false, count: T * W)
            for (i, e) in used[r].enumerated() {
                if r == me { mine[waves[i]].append(e) }
                for s in buckets[e] where !seen[waves[i] * T + s / K] {
                    seen[waves[i] * T + s / K] = true
                }
            }
            for w in 0..<W { touched[r][w] = (0..<T).filter { seen[w * T + $0] } }
        }
        return (W, touched, mine)
    }

    /// When the last rank started its last all-gather (the post times the senders wrote into
    /// the received blocks, `areas` floats apart): the wait after that is communication.
    private static func lastPost(after t: UInt64, receive: UnsafeMutablePointer<Float>, areas: [Int]) -> UInt64 {
        var latest = t
        var p = receive
        for area in areas {
            var posted: UInt64 = 0
            withUnsafeMutableBytes(of: &posted) { $0.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(p + 2), count: 8)) }
            latest = max(latest, posted)
            p += area
        }
        return latest
    }

    /// Sums every rank's received rows into `output` in one fixed order on every rank (rank, then
    /// wave, then token), after checking each block's routing digest against this rank's.
    private func sumInOrder(
        layer: Int, receive: [UnsafeMutablePointer<Float>], rankArea: [[Int]], touched: [[[Int]]], header: Int,
        digest: UInt64, output: UnsafeMutablePointer<Float>, d: Int
    ) {
        for r in rankArea.indices {
            for w in receive.indices {
                var p = receive[w]
                for q in 0..<r { p += rankArea[q][w] }
                var got: UInt64 = 0
                withUnsafeMutableBytes(of: &got) { $0.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: 8)) }
                precondition(
                    got == digest,
                    "expert parallelism: rank \(r) routed layer \(layer) differently from rank \(world.rank); the ranks' forward passes diverged")
                for (i, t) in touched[r][w].enumerated() {
                    axpy(1, p + header + i * d, output + t * d, d)
                }
            }
        }
    }

    /// This rank's experts `wave`: rows[i] = Σ_k w_k · expert_k(x_t) over the wave's experts,
    /// for t = touched[i]. rows is `[touched.count, d]`, zeroed by the caller.
    private func computeWave(
        layer: Int, _ wave: [Int], buckets: [[Int]], topK K: Int, touched: [Int], input: UnsafePointer<Float>, d: Int,
        routing: ExpertRouting, rows: UnsafeMutablePointer<Float>
    ) {
        var rowOf = [Int](repeating: -1, count: routing.tokenCount)
        for (i, t) in touched.enumerated() { rowOf[t] = i }
        activation.runRouted(
            wave.map { (experts[layer][$0], buckets[$0]) }, topK: K, input: input, hiddenSize: d, weights: routing.weights
        ) { slot in rows + rowOf[slot / K] * d }
    }
}

extension UnsafeMutablePointer<Float> {
    fileprivate var raw: UnsafeMutableRawPointer { UnsafeMutableRawPointer(self) }
}
