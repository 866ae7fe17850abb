// ExpertExecutor.swift: the seam between MoE routing (model math) and expert execution
// (where expert weights live and which threads, NUMA nodes or hosts run them).
//
// The model computes, per token, which experts run and with what weight; an executor
// returns Σ_k weight_k · expert_k(x). Local execution is one implementation; expert
// parallelism over MPI will be another, without touching the model.
import CKernels
import Tensors

/// The weights of one SwiGLU expert: gate `w1` [I, D], up `w3` [I, D], down `w2` [D, I].
public struct ExpertWeights: Sendable {
    public let w1: WeightMatrix
    public let w3: WeightMatrix
    public let w2: WeightMatrix

    public init(w1: WeightMatrix, w3: WeightMatrix, w2: WeightMatrix) {
        self.w1 = w1
        self.w3 = w3
        self.w2 = w2
    }

    public var intermediateSize: Int { w1.rows }
    public var hiddenSize: Int { w1.cols }
}

/// Which experts each token of a step uses, for one MoE layer.
public struct ExpertRouting: Sendable {
    public let tokenCount: Int
    public let topK: Int
    /// `[tokenCount, topK]` expert ids.
    public var experts: [Int32]
    /// `[tokenCount, topK]` weights, already normalised and scaled.
    public var weights: [Float]

    public init(tokenCount: Int, topK: Int, experts: [Int32], weights: [Float]) {
        precondition(experts.count == tokenCount * topK && weights.count == tokenCount * topK)
        self.tokenCount = tokenCount
        self.topK = topK
        self.experts = experts
        self.weights = weights
    }
}

/// Runs routed experts. Implementations own (or know where to find) the expert weights.
public protocol ExpertExecutor: Sendable {
    /// Number of routed experts of `layer`.
    func expertCount(layer: Int) -> Int

    /// output[t] = Σ_k routing.weights[t,k] · expert_{routing.experts[t,k]}(input[t]).
    /// - Parameters:
    ///   - input: `[routing.tokenCount, hiddenSize]`.
    ///   - output: `[routing.tokenCount, hiddenSize]`, overwritten.
    func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize: Int, routing: ExpertRouting,
        output: UnsafeMutablePointer<Float>)

    /// `run`, plus `alongside`: work that neither reads `output` nor writes what the experts
    /// read (the model passes its shared expert), done while the call's own communication is
    /// in flight. An executor with nothing in flight runs it after the experts (the default).
    func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize: Int, routing: ExpertRouting,
        output: UnsafeMutablePointer<Float>, alongside: () -> Void)
}

extension ExpertExecutor {
    public func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize: Int, routing: ExpertRouting,
        output: UnsafeMutablePointer<Float>, alongside: () -> Void
    ) {
        run(layer: layer, input: input, hiddenSize: hiddenSize, routing: routing, output: output)
        alongside()
    }
}

/// SwiGLU with V4's clamps: g = min(w1·x, limit), u = clamp(w3·x, ±limit), y = w2·(silu(g)⊙u).
public struct SwiGLU: Sendable {
    /// `swiglu_limit`; nil or ≤ 0 disables the clamps.
    public let limit: Float?

    public init(limit: Float?) { self.limit = limit }

    /// y = expert(x) for `tokenCount` rows. x is `[tokenCount, D]`, y is `[tokenCount, D]`.
    public func forward(
        _ expert: ExpertWeights, x: UnsafePointer<Float>, tokenCount: Int, y: UnsafeMutablePointer<Float>
    ) {
        forward([(expert, x, tokenCount, y)])
    }

    /// Several experts at once, in two waves over the kernel threads: every gate and up
    /// product, then every down product (decode's experts are small; one wave keeps both
    /// cores streaming weights). Each item is (expert, x `[n, D]`, n, y `[n, D]`).
    public func forward(
        _ items: [(expert: ExpertWeights, x: UnsafePointer<Float>, tokenCount: Int, y: UnsafeMutablePointer<Float>)]
    ) {
        let sizes = items.map { $0.tokenCount * $0.expert.intermediateSize }
        let total = sizes.reduce(0, +)
        guard total > 0 else { return }
        let g = UnsafeMutablePointer<Float>.allocate(capacity: 2 * total)
        defer { g.deallocate() }
        let u = g + total
        var offsets: [Int] = []
        var o = 0
        for s in sizes { offsets.append(o); o += s }
        var first: [MatrixProduct] = []
        for (i, it) in items.enumerated() where it.tokenCount > 0 {
            let e = it.expert, inter = e.intermediateSize
            first.append(MatrixProduct(e.w1, x: it.x, ldx: e.hiddenSize, tokenCount: it.tokenCount, y: g + offsets[i], ldy: inter))
            first.append(MatrixProduct(e.w3, x: it.x, ldx: e.hiddenSize, tokenCount: it.tokenCount, y: u + offsets[i], ldy: inter))
        }
        WeightMatrix.applyAll(first)
        ck_swiglu(g, u, total, limit ?? 0, g)
        var second: [MatrixProduct] = []
        for (i, it) in items.enumerated() where it.tokenCount > 0 {
            let e = it.expert
            second.append(MatrixProduct(e.w2, x: g + offsets[i], ldx: e.intermediateSize, tokenCount: it.tokenCount, y: it.y, ldy: e.w2.rows))
        }
        WeightMatrix.applyAll(second)
    }
}

extension SwiGLU {
    /// Runs each expert on the tokens of its (token, slot) pairs, gathered from `input` (rows of
    /// `hiddenSize`), all in the same two waves, then adds weight[slot] · output to
    /// `destination(slot)` in expert order, then slot order (the reference loop's order, so every
    /// executor sums the same way). `destination` must depend only on the token (slot / topK):
    /// prefill-sized batches gather and combine tokens over the kernel threads.
    public func runRouted(
        _ experts: [(weights: ExpertWeights, slots: [Int])], topK K: Int, input: UnsafePointer<Float>, hiddenSize d: Int,
        weights: [Float], destination: (Int) -> UnsafeMutablePointer<Float>
    ) {
        let rows = experts.reduce(0) { $0 + $1.slots.count }
        guard rows > 0 else { return }
        let xs = UnsafeMutablePointer<Float>.allocate(capacity: 2 * rows * d)
        defer { xs.deallocate() }
        let ys = xs + rows * d
        var items: [(expert: ExpertWeights, x: UnsafePointer<Float>, tokenCount: Int, y: UnsafeMutablePointer<Float>)] = []
        let slotOf = experts.flatMap(\.slots)  // row → slot, rows in expert order
        var row = 0
        for e in experts {
            items.append((e.weights, UnsafePointer(xs + row * d), e.slots.count, ys + row * d))
            row += e.slots.count
        }
        let chunks = rows * d < 32768 || rows < 32 ? 1 : min(rows / 16, 64)  // ≥ 16 rows a chunk (never 0 chunks)
        KernelThreads.parallelFor(chunks) { c in
            for r in stride(from: c, to: rows, by: chunks) { (xs + r * d).update(from: input + (slotOf[r] / K) * d, count: d) }
        }
        forward(items)
        if chunks == 1 {
            for r in 0..<rows { axpy(weights[slotOf[r]], ys + r * d, destination(slotOf[r]), d) }
            return
        }
        // Each token's rows in that order (a stable bucketing by token), tokens over the threads.
        let tokens = (slotOf.max() ?? 0) / K + 1
        var start = [Int](repeating: 0, count: tokens + 1)
        for slot in slotOf { start[slot / K + 1] += 1 }
        for t in 0..<tokens { start[t + 1] += start[t] }
        var next = start, order = [Int](repeating: 0, count: rows)
        for r in 0..<rows {
            let t = slotOf[r] / K
            order[next[t]] = r
            next[t] += 1
        }
        KernelThreads.parallelFor(chunks) { c in
            for t in stride(from: c, to: tokens, by: chunks) {
                for j in start[t]..<start[t + 1] {
                    let r = order[j]
                    axpy(weights[slotOf[r]], ys + r * d, destination(slotOf[r]), d)
                }
            }
        }
    }
}

/// Runs the experts in this process over the kernel threads: the tokens routed to each
/// expert form one matrix product, and all experts of a layer run in the same two waves.
public final class LocalExpertExecutor: ExpertExecutor {
    /// `[layer][expert]`; layers without routed experts hold an empty array.
    public let experts: [[ExpertWeights]]
    public let activation: SwiGLU

    public init(experts: [[ExpertWeights]], activation: SwiGLU) {
        self.experts = experts
        self.activation = activation
    }

    public func expertCount(layer: Int) -> Int { experts[layer].count }

    public func run(
        layer: Int, input: UnsafePointer<Float>, hiddenSize d: Int, routing: ExpertRouting,
        output: UnsafeMutablePointer<Float>
    ) {
        output.update(repeating: 0, count: routing.tokenCount * d)
        let layerExperts = experts[layer]
        // Bucket (token, slot) pairs by expert, in token order.
        var buckets = [[Int]](repeating: [], count: layerExperts.count)
        for t in 0..<routing.tokenCount {
            for k in 0..<routing.topK {
                let e = Int(routing.experts[t * routing.topK + k])
                precondition(e >= 0 && e < layerExperts.count, "expert id out of range")
                buckets[e].append(t * routing.topK + k)
            }
        }
        // Gather each used expert's tokens, run them all in two waves, then combine.
        let used = buckets.indices.filter { !buckets[$0].isEmpty }
        activation.runRouted(
            used.map { (layerExperts[$0], buckets[$0]) }, topK: routing.topK, input: input, hiddenSize: d,
            weights: routing.weights
        ) { slot in output + (slot / routing.topK) * d }
    }
}
