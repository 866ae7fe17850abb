// ExpertExecutor.swift: the seam between MoE routing (model math) and expert execution
// (where expert weights live and which threads, NUMA nodes or hosts run them).
//
// The model computes, per token, which experts run and with what weight; an executor
// returns Σ_k weight_k · expert_k(x). Local execution is one implementation; expert
// parallelism over MPI will be another, without touching the model.
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
        let inter = expert.intermediateSize
        var g = [Float](repeating: 0, count: tokenCount * inter)
        var u = [Float](repeating: 0, count: tokenCount * inter)
        g.withUnsafeMutableBufferPointer { gp in
            u.withUnsafeMutableBufferPointer { up in
                expert.w1.apply(x, ldx: expert.hiddenSize, tokenCount: tokenCount, into: gp.baseAddress!, ldy: inter)
                expert.w3.apply(x, ldx: expert.hiddenSize, tokenCount: tokenCount, into: up.baseAddress!, ldy: inter)
                let useLimit = (limit ?? 0) > 0
                let lim = limit ?? 0
                for i in 0..<(tokenCount * inter) {
                    var gv = gp[i]
                    var uv = up[i]
                    if useLimit {
                        gv = min(gv, lim)
                        uv = min(max(uv, -lim), lim)
                    }
                    gp[i] = VectorOps.silu(gv) * uv
                }
                expert.w2.apply(gp.baseAddress!, ldx: inter, tokenCount: tokenCount, into: y, ldy: expert.w2.rows)
            }
        }
    }
}

/// Runs every expert on this thread, grouping the tokens routed to each expert into one
/// matrix product.
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
        var xs: [Float] = []
        var ys: [Float] = []
        for (e, slots) in buckets.enumerated() where !slots.isEmpty {
            let n = slots.count
            xs = [Float](repeating: 0, count: n * d)
            ys = [Float](repeating: 0, count: n * d)
            xs.withUnsafeMutableBufferPointer { xp in
                for (i, slot) in slots.enumerated() {
                    (xp.baseAddress! + i * d).update(from: input + (slot / routing.topK) * d, count: d)
                }
            }
            xs.withUnsafeBufferPointer { xp in
                ys.withUnsafeMutableBufferPointer { yp in
                    activation.forward(layerExperts[e], x: xp.baseAddress!, tokenCount: n, y: yp.baseAddress!)
                    for (i, slot) in slots.enumerated() {
                        axpy(routing.weights[slot], yp.baseAddress! + i * d, output + (slot / routing.topK) * d, d)
                    }
                }
            }
        }
    }
}
