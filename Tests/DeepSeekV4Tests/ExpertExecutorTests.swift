// ExpertExecutorTests.swift: routed experts run only through the injected ExpertExecutor.
// A recording executor wrapping the local one sees every MoE layer's routing and leaves the
// logits bit-identical; an executor whose output is changed changes the logits.
import Checkpoint
import DeepSeekV4
import Foundation
import ModelRuntime
import Tensors
import Testing

/// Forwards to `inner` and records each call's layer and routing; optionally scales the output.
final class RecordingExpertExecutor: ExpertExecutor, @unchecked Sendable {
    let inner: any ExpertExecutor
    let outputScale: Float
    private let lock = NSLock()
    private var recorded: [(layer: Int, routing: ExpertRouting)] = []

    init(wrapping inner: any ExpertExecutor, outputScale: Float = 1) {
        self.inner = inner
        self.outputScale = outputScale
    }

    var calls: [(layer: Int, routing: ExpertRouting)] {
        lock.lock()
        defer { lock.unlock() }
        return recorded
    }

    func expertCount(layer: Int) -> Int { inner.expertCount(layer: layer) }

    func run(layer: Int, input: UnsafePointer<Float>, hiddenSize: Int, routing: ExpertRouting, output: UnsafeMutablePointer<Float>) {
        lock.lock()
        recorded.append((layer, routing))
        lock.unlock()
        inner.run(layer: layer, input: input, hiddenSize: hiddenSize, routing: routing, output: output)
        if outputScale != 1 {
            for i in 0..<(routing.tokenCount * hiddenSize) { output[i] *= outputScale }
        }
    }
}

/// Runs the `alongside` work (the shared expert) before the experts, as an executor busy with
/// communication may, and counts the calls; `skipsAlongside` drops it instead.
final class AlongsideFirstExecutor: ExpertExecutor, @unchecked Sendable {
    let inner: any ExpertExecutor
    let skipsAlongside: Bool
    private(set) var alongsideCalls = 0

    init(wrapping inner: any ExpertExecutor, skipsAlongside: Bool = false) {
        self.inner = inner
        self.skipsAlongside = skipsAlongside
    }

    func expertCount(layer: Int) -> Int { inner.expertCount(layer: layer) }

    func run(layer: Int, input: UnsafePointer<Float>, hiddenSize: Int, routing: ExpertRouting, output: UnsafeMutablePointer<Float>) {
        inner.run(layer: layer, input: input, hiddenSize: hiddenSize, routing: routing, output: output)
    }

    func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize: Int, routing: ExpertRouting, output: UnsafeMutablePointer<Float>,
        alongside: () -> Void
    ) {
        alongsideCalls += 1
        if !skipsAlongside { alongside() }
        inner.run(layer: layer, input: input, hiddenSize: hiddenSize, routing: routing, output: output)
    }
}

@Suite struct ExpertExecutorTests {
    /// A prefill-sized batch gathers and combines its tokens over the kernel threads (each
    /// token's rows in expert order, then slot order): every token gets the bits it gets alone
    /// (one row per expert: the serial path), so the order of its K additions is kept. Also a
    /// few rows of a wide model (9 × 4,096 values: past the threading size, too few rows to split).
    @Test(arguments: [(64, 300), (4096, 3)])
    func routedBatchCombinesEachTokenInTheSerialOrder(shape: (D: Int, T: Int)) {
        KernelThreads.start(count: 2)
        let (D, I, E, K, T) = (shape.D, 8, 6, 3, shape.T)  // 900 rows × 64 and 9 × 4,096 values ≥ 32,768
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random(_ n: Int) -> [Float] {
            (0..<n).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Float(Int64(bitPattern: state >> 11) % 2_000_001) / 1_000_000 - 1
            }
        }
        let experts = (0..<E).map { _ in
            ExpertWeights(
                w1: WeightMatrix(rows: I, cols: D, values: random(I * D)), w3: WeightMatrix(rows: I, cols: D, values: random(I * D)),
                w2: WeightMatrix(rows: D, cols: I, values: random(D * I)))
        }
        let x = random(T * D), w = random(T * K).map { abs($0) + 0.1 }
        let ids = (0..<T).flatMap { t in (0..<K).map { k in Int32((t * 5 + k * (1 + t % 2)) % E) } }
        let executor = LocalExpertExecutor(experts: [experts], activation: SwiGLU(limit: 10))
        var all = [Float](repeating: 0, count: T * D)
        executor.run(layer: 0, input: x, hiddenSize: D, routing: ExpertRouting(tokenCount: T, topK: K, experts: ids, weights: w), output: &all)
        for t in [0, 1, 2, 151, 299] where t < T {
            var one = [Float](repeating: 0, count: D)
            let routing = ExpertRouting(
                tokenCount: 1, topK: K, experts: Array(ids[(t * K)..<((t + 1) * K)]), weights: Array(w[(t * K)..<((t + 1) * K)]))
            Array(x[(t * D)..<((t + 1) * D)]).withUnsafeBufferPointer {
                executor.run(layer: 0, input: $0.baseAddress!, hiddenSize: D, routing: routing, output: &one)
            }
            #expect(one.map(\.bitPattern) == all[(t * D)..<((t + 1) * D)].map(\.bitPattern), "token \(t)")
        }
    }

    let dir = fixture("tiny-released")

    @Test func routingGoesThroughTheInjectedExecutor() throws {
        let local = try DeepSeekV4Model(directory: dir)
        let recorder = RecordingExpertExecutor(wrapping: local.executor)
        let model = try DeepSeekV4Model(directory: dir, executor: recorder)
        #expect(model.executor is RecordingExpertExecutor)
        let ids = Array(try readIds(dir).prefix(40))
        let c = model.config

        // Two chunks: every MoE layer calls the executor once per forward, in layer order.
        let ours = try run(model, ids, chunk: 25)
        let reference = try run(local, ids, chunk: 25)
        #expect(ours == reference, "wrapping the local executor must not change a bit")
        let calls = recorder.calls
        #expect(calls.map(\.layer) == Array(0..<c.layerCount) + Array(0..<c.layerCount))
        #expect(calls.map(\.routing.tokenCount) == Array(repeating: 25, count: c.layerCount) + Array(repeating: 15, count: c.layerCount))

        // Hash layers route by tid2eid[token], read here straight from the checkpoint.
        for l in 0..<c.layerCount where c.routingKinds[l] == .hash {
            let table = try model.store.tensor("layers.\(l).ffn.gate.tid2eid").integers()
            let k = c.expertsPerToken
            let routed = calls.filter { $0.layer == l }.flatMap { $0.routing.experts.map(Int.init) }
            #expect(routed == ids.flatMap { table[($0 * k)..<($0 * k + k)] }, "layer \(l)")
        }
        // Every token's weights are normalised, then scaled by routed_scaling_factor.
        for call in calls {
            let r = call.routing
            #expect(r.topK == c.expertsPerToken)
            for t in 0..<r.tokenCount {
                let sum = r.weights[(t * r.topK)..<((t + 1) * r.topK)].reduce(0, +)
                #expect(abs(sum - c.routedScalingFactor) < 1e-5, "layer \(call.layer) token \(t): weights sum to \(sum)")
                #expect(Set(r.experts[(t * r.topK)..<((t + 1) * r.topK)]).count == r.topK)
            }
        }
    }

    /// The executor's output is what the model adds: changing it changes the logits.
    @Test func theExecutorsOutputReachesTheLogits() throws {
        let local = try DeepSeekV4Model(directory: dir)
        let ids = Array(try readIds(dir).prefix(12))
        let model = try DeepSeekV4Model(directory: dir, executor: RecordingExpertExecutor(wrapping: local.executor, outputScale: 0))
        let withExperts = try run(local, ids, chunk: nil)
        let withoutExperts = try run(model, ids, chunk: nil)
        let worst = zip(withExperts, withoutExperts).map { abs($0 - $1) }.max() ?? 0
        #expect(worst > 1e-2, "silencing the routed experts changed the logits by only \(worst)")
    }

    /// The model hands its shared expert to the executor as `alongside` work (expert-parallel
    /// executors run it while their exchange travels): done in either order it changes no bit,
    /// and dropped it changes the logits.
    @Test func theSharedExpertRunsAsTheExecutorsAlongsideWork() throws {
        let local = try DeepSeekV4Model(directory: dir)
        let ids = Array(try readIds(dir).prefix(30))
        let first = AlongsideFirstExecutor(wrapping: local.executor)
        let model = try DeepSeekV4Model(directory: dir, executor: first)
        let reference = try run(local, ids, chunk: 17)
        #expect(try run(model, ids, chunk: 17) == reference, "the shared expert before the routed ones must not change a bit")
        #expect(first.alongsideCalls == 2 * model.config.layerCount)
        let dropped = try DeepSeekV4Model(directory: dir, executor: AlongsideFirstExecutor(wrapping: local.executor, skipsAlongside: true))
        let worst = zip(reference, try run(dropped, ids, chunk: 17)).map { abs($0 - $1) }.max() ?? 0
        #expect(worst > 1e-3, "dropping the shared expert changed the logits by only \(worst)")
    }
}
