// DispatchingExpertExecutor.swift: expert parallelism for `dsv4 serve`. Only rank 0 runs the
// model (engine, paged cache, HTTP); for each MoE layer it broadcasts a small header and the
// layer's input rows and routing, every rank runs its own experts through the same
// ShardedExpertExecutor that `dsv4 logits` uses (waves whose partials travel while the next
// wave computes, then one fixed-order sum), and rank 0 keeps the sum. Worker ranks answer
// these calls in `serveLayerCalls()` until rank 0 broadcasts quit.
import Dispatch
import ModelRuntime
import Synchronization

/// The header rank 0 broadcasts before every layer call, as four Int64s.
struct LayerCallHeader: Equatable {
    /// false: quit (the server stopped); the other fields are then 0.
    var run: Bool
    var layer: Int
    var tokenCount: Int
    var topK: Int

    static let quit = LayerCallHeader(run: false, layer: 0, tokenCount: 0, topK: 0)

    var words: [Int64] { [run ? 1 : 0, Int64(layer), Int64(tokenCount), Int64(topK)] }

    init(run: Bool, layer: Int, tokenCount: Int, topK: Int) {
        self.run = run
        self.layer = layer
        self.tokenCount = tokenCount
        self.topK = topK
    }

    init(words w: [Int64]) {
        precondition(w.count == 4)
        self.init(run: w[0] != 0, layer: Int(w[1]), tokenCount: Int(w[2]), topK: Int(w[3]))
    }

    /// Rank 0's header on every rank.
    static func broadcast(_ header: LayerCallHeader, world: MPIWorld) -> LayerCallHeader {
        var w = header.words
        w.withUnsafeMutableBytes { world.broadcast($0) }
        return LayerCallHeader(words: w)
    }
}

extension MPIWorld {
    /// Rank 0's layer input `[tokenCount, hiddenSize]` and routing on every rank, in place (the
    /// buffers are only read on rank 0). Returns the bytes sent to each other rank.
    @discardableResult
    func broadcastLayerCall(input: UnsafeMutablePointer<Float>, rowFloats: Int, experts: inout [Int32], weights: inout [Float]) -> Int {
        broadcast(UnsafeMutableRawBufferPointer(start: input, count: rowFloats * 4))
        experts.withUnsafeMutableBytes { broadcast($0) }
        weights.withUnsafeMutableBytes { broadcast($0) }
        return 32 + rowFloats * 4 + experts.count * 4 + weights.count * 4
    }
}

/// Dispatch (rank 0 → every rank) of one MoE layer call, summed over calls.
public struct LayerDispatchStats: Sendable, Equatable {
    /// Layer calls dispatched (one per forward pass).
    public var calls = 0
    /// Bytes rank 0 broadcast (header, input rows, routing), counted once per receiving rank.
    public var bytesSent = 0
    /// Seconds rank 0 spent in the broadcasts.
    public var seconds = 0.0
    public init() {}
}

/// Rank 0's executor under `dsv4 serve`: sends each MoE layer call to the workers and runs its
/// own share with them. Calls come from one thread (the engine's); `inFlightSeconds` and
/// `quit` may be called from any thread.
public final class DispatchingExpertExecutor: ExpertExecutor, @unchecked Sendable {
    /// Runs rank 0's experts and combines every rank's partials in the fixed order.
    public let sharded: ShardedExpertExecutor
    /// `[layer]`, accumulated by `run`.
    public private(set) var dispatchStats: [LayerDispatchStats]

    private struct Flight {
        /// Monotonic nanoseconds when the current call began; nil between calls.
        var started: UInt64?
        /// Quit was sent: no call may follow.
        var closed = false
    }
    private let flight = Mutex(Flight())

    /// - Parameter sharded: rank 0's executor over the job's world (rank 0 only).
    public init(sharded: ShardedExpertExecutor) {
        precondition(sharded.world.rank == 0, "only rank 0 dispatches")
        self.sharded = sharded
        dispatchStats = Array(repeating: LayerDispatchStats(), count: sharded.experts.count)
    }

    public func expertCount(layer: Int) -> Int { sharded.expertCount(layer: layer) }

    public func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize d: Int, routing: ExpertRouting,
        output: UnsafeMutablePointer<Float>
    ) {
        run(layer: layer, input: input, hiddenSize: d, routing: routing, output: output) {}
    }

    public func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize d: Int, routing: ExpertRouting,
        output: UnsafeMutablePointer<Float>, alongside: () -> Void
    ) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        flight.withLock {
            precondition(!$0.closed, "an MoE layer call after the workers were told to quit")
            $0.started = t0
        }
        defer { flight.withLock { $0.started = nil } }
        let world = sharded.world
        let header = LayerCallHeader(run: true, layer: layer, tokenCount: routing.tokenCount, topK: routing.topK)
        _ = LayerCallHeader.broadcast(header, world: world)
        var experts = routing.experts, weights = routing.weights
        let bytes = world.broadcastLayerCall(
            input: UnsafeMutablePointer(mutating: input), rowFloats: routing.tokenCount * d, experts: &experts, weights: &weights)
        var st = dispatchStats[layer]
        st.calls += 1
        st.bytesSent += bytes * (world.size - 1)
        st.seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        dispatchStats[layer] = st
        sharded.run(layer: layer, input: input, hiddenSize: d, routing: routing, output: output, alongside: alongside)
    }

    /// Seconds the current layer call has been running (waiting for the workers, mostly);
    /// nil between calls.
    public var inFlightSeconds: Double? {
        guard let started = flight.withLock({ $0.started }) else { return nil }
        return Double(DispatchTime.now().uptimeNanoseconds &- started) / 1e9
    }

    /// Tells the workers to leave `serveLayerCalls()`. Call once the engine has stopped: no
    /// layer call may follow. Idempotent.
    public func quit() {
        let first = flight.withLock { f in
            precondition(f.started == nil, "quit during a layer call")
            defer { f.closed = true }
            return !f.closed
        }
        if first { _ = LayerCallHeader.broadcast(.quit, world: sharded.world) }
    }
}

extension ShardedExpertExecutor {
    /// A worker rank's part in `dsv4 serve`: runs this rank's experts for every layer call
    /// rank 0 dispatches, until rank 0 says quit.
    public func serveLayerCalls() {
        precondition(world.rank != 0, "rank 0 dispatches; the other ranks serve")
        let d = experts.lazy.compactMap(\.first).first?.hiddenSize ?? 0
        var scratch: [Float] = []
        while true {
            let h = LayerCallHeader.broadcast(.quit, world: world)
            guard h.run else { return }
            precondition(h.layer >= 0 && h.layer < experts.count && h.tokenCount >= 0 && h.topK > 0, "bad layer call header \(h)")
            // One spare float: a call with no tokens still has buffers to point at.
            var input = [Float](repeating: 0, count: h.tokenCount * d + 1)
            var ids = [Int32](repeating: 0, count: h.tokenCount * h.topK)
            var weights = [Float](repeating: 0, count: h.tokenCount * h.topK)
            input.withUnsafeMutableBufferPointer { p in
                world.broadcastLayerCall(input: p.baseAddress!, rowFloats: h.tokenCount * d, experts: &ids, weights: &weights)
            }
            if scratch.count < input.count { scratch = [Float](repeating: 0, count: input.count) }
            let routing = ExpertRouting(tokenCount: h.tokenCount, topK: h.topK, experts: ids, weights: weights)
            input.withUnsafeBufferPointer { x in
                scratch.withUnsafeMutableBufferPointer { y in
                    run(layer: h.layer, input: x.baseAddress!, hiddenSize: d, routing: routing, output: y.baseAddress!)
                }
            }
        }
    }
}
