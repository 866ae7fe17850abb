// ExpertUnionCounter.swift: for `dsv4 bench throughput`, the weight bytes a batched decode step
// must read at least: each routed expert that any token of the step uses, once (the products
// of one expert run all its tokens in one pass over its weights).
import DeepSeekV4
import ModelRuntime

/// Wraps the model's executor and adds up, for every MoE layer call, the bytes of the union of
/// the experts the call's tokens were routed to.
final class ExpertUnionCounter: ExpertExecutor, @unchecked Sendable {
    let inner: any ExpertExecutor
    /// `[layer][expert]` bytes of w1, w2 and w3 (scales included).
    private let expertBytes: [[Int]]
    /// Union bytes summed over the calls since `reset()`.
    private(set) var bytes = 0
    /// Distinct (call, expert) pairs since `reset()`.
    private(set) var experts = 0

    init(wrapping inner: any ExpertExecutor, experts: [[ExpertWeights]]) {
        self.inner = inner
        expertBytes = experts.map { $0.map { $0.w1.readBytes + $0.w2.readBytes + $0.w3.readBytes } }
    }

    func reset() {
        bytes = 0
        experts = 0
    }

    func expertCount(layer: Int) -> Int { inner.expertCount(layer: layer) }

    func run(layer: Int, input: UnsafePointer<Float>, hiddenSize: Int, routing: ExpertRouting, output: UnsafeMutablePointer<Float>) {
        count(layer: layer, routing)
        inner.run(layer: layer, input: input, hiddenSize: hiddenSize, routing: routing, output: output)
    }

    func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize: Int, routing: ExpertRouting, output: UnsafeMutablePointer<Float>,
        alongside: () -> Void
    ) {
        count(layer: layer, routing)
        inner.run(layer: layer, input: input, hiddenSize: hiddenSize, routing: routing, output: output, alongside: alongside)
    }

    private func count(layer: Int, _ routing: ExpertRouting) {
        let used = Set(routing.experts)
        experts += used.count
        bytes += used.reduce(0) { $0 + expertBytes[layer][Int($1)] }
    }
}
