// DeepSeekV4Model.swift: the whole V4 forward pass over a chunk of one sequence (spec §2).
//
//   X = [e, e, …, e]                                  (N streams of the embedding)
//   for each layer: X = mHC(X, attention); X = mHC(X, MoE)
//   logits = head · RMSNorm(HC_head(X))
//
// The same code runs a whole prompt, a prefill chunk or one decode token: all history lives
// in `SequenceState`, so any chunking gives the same logits.
import Checkpoint
import Foundation
import ModelRuntime
import Numerics

/// Errors from running the model on bad input.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    /// A token id outside the vocabulary.
    case tokenOutOfRange(index: Int, id: Int, vocabSize: Int)
    /// The sequence would exceed `max_position_embeddings`.
    case contextOverflow(length: Int, maximum: Int)
    /// No tokens were given.
    case emptyInput

    public var description: String {
        switch self {
        case .tokenOutOfRange(let i, let id, let v): "token id \(id) at index \(i) is outside the vocabulary (0..<\(v))"
        case .contextOverflow(let n, let m): "sequence length \(n) exceeds the model's maximum of \(m) positions"
        case .emptyInput: "no input tokens"
        }
    }
}

/// A loaded DeepSeek-V4 model.
public final class DeepSeekV4Model: @unchecked Sendable {
    public let config: DeepSeekV4Config
    public let store: TensorStore
    let weights: ModelWeights
    public let executor: any ExpertExecutor
    let activation: SwiGLU
    let mainRope: RotaryEmbedding
    let compressRope: RotaryEmbedding

    /// Tensors in the checkpoint that the main model does not read (MTP block, extras).
    public var unusedTensors: [String] { weights.unusedTensors }

    /// Loads `config.json` and the safetensors weights of `directory`.
    /// - Parameters:
    ///   - executor: runs routed experts; nil builds a `LocalExpertExecutor`.
    ///   - progress: called after each safetensors shard is mapped and validated.
    public convenience init(
        directory: String, executor: (any ExpertExecutor)? = nil, progress: ((LoadProgress) -> Void)? = nil
    ) throws {
        let config = try DeepSeekV4Config.load(directory: directory)
        let store = try TensorStore(directory: directory, progress: progress)
        try self.init(config: config, store: store, executor: executor)
    }

    public init(config: DeepSeekV4Config, store: TensorStore, executor: (any ExpertExecutor)? = nil) throws {
        self.config = config
        self.store = store
        weights = try ModelWeights.load(config: config, store: store)
        activation = SwiGLU(limit: config.swigluLimit)
        self.executor = executor ?? LocalExpertExecutor(experts: weights.experts, activation: activation)
        mainRope = RotaryEmbedding(dim: config.ropeDim, parameters: config.mainRope)
        compressRope = RotaryEmbedding(dim: config.ropeDim, parameters: config.compressRope)
    }

    /// A fresh per-sequence state.
    public func makeState() -> SequenceState { SequenceState(config: config) }

    /// Runs `tokens` (the next tokens of the sequence in `state`) and returns their logits,
    /// `[tokens.count, vocabSize]`, or only the last row when `lastOnly`.
    public func forward(tokens: [Int], state: inout SequenceState, lastOnly: Bool = false) throws -> [Float] {
        let c = config
        guard !tokens.isEmpty else { throw ModelError.emptyInput }
        for (i, id) in tokens.enumerated() where id < 0 || id >= c.vocabSize {
            throw ModelError.tokenOutOfRange(index: state.position + i, id: id, vocabSize: c.vocabSize)
        }
        guard state.position + tokens.count <= c.maxPositionEmbeddings else {
            throw ModelError.contextOverflow(length: state.position + tokens.count, maximum: c.maxPositionEmbeddings)
        }
        let T = tokens.count
        let D = c.hiddenSize
        let N = c.hcMult
        let p0 = state.position
        let ids = tokens.map { Int32($0) }

        // Embedding, copied into every stream.
        var X = [Float](repeating: 0, count: T * N * D)
        X.withUnsafeMutableBufferPointer { xp in
            for t in 0..<T {
                let row = weights.embed.row(tokens[t])
                for i in 0..<N { row.withUnsafeBufferPointer { (xp.baseAddress! + (t * N + i) * D).update(from: $0.baseAddress!, count: D) } }
            }
        }

        for l in 0..<c.layerCount {
            let lw = weights.layers[l]
            let kind = c.attentionKinds[l]
            let rope = kind == .sliding ? mainRope : compressRope

            var mix = HyperConnection.blockMix(lw.attentionHC, streams: X, tokenCount: T, config: c)
            var u = HyperConnection.collapse(streams: X, weights: mix.map(\.pre), tokenCount: T, hidden: D, streamCount: N)
            Self.rmsNormRows(&u, rowCount: T, width: D, weight: lw.attentionNorm, eps: c.rmsNormEps)
            let a = Attention.forward(
                lw.attention, kind: kind, h: u, tokenCount: T, startPosition: p0, state: &state.layers[l], rope: rope, config: c)
            HyperConnection.expand(streams: &X, blockOutput: a, mix: mix, tokenCount: T, hidden: D, streamCount: N)

            mix = HyperConnection.blockMix(lw.ffnHC, streams: X, tokenCount: T, config: c)
            u = HyperConnection.collapse(streams: X, weights: mix.map(\.pre), tokenCount: T, hidden: D, streamCount: N)
            Self.rmsNormRows(&u, rowCount: T, width: D, weight: lw.ffnNorm, eps: c.rmsNormEps)
            let f = MoE.forward(lw.moe, layer: l, h: u, tokens: ids, tokenCount: T, executor: executor, activation: activation, config: c)
            HyperConnection.expand(streams: &X, blockOutput: f, mix: mix, tokenCount: T, hidden: D, streamCount: N)
        }
        state.position += T

        // HC head, final norm, vocabulary projection.
        let first = lastOnly ? T - 1 : 0
        let rows = T - first
        let tail = Array(X[(first * N * D)...])
        let m = HyperConnection.mixes(weights.hcHeadFn, streams: tail, tokenCount: rows, eps: c.rmsNormEps)
        let pre = (0..<rows).map { t in
            (0..<N).map { i in VectorOps.sigmoid(m[t * N + i] * weights.hcHeadScale[0] + weights.hcHeadBase[i]) + c.hcEps }
        }
        var y = HyperConnection.collapse(streams: tail, weights: pre, tokenCount: rows, hidden: D, streamCount: N)
        Self.rmsNormRows(&y, rowCount: rows, width: D, weight: weights.norm, eps: c.rmsNormEps)
        return weights.head.apply(y, tokenCount: rows)
    }

    static func rmsNormRows(_ x: inout [Float], rowCount: Int, width: Int, weight: [Float], eps: Float) {
        x.withUnsafeMutableBufferPointer { p in
            weight.withUnsafeBufferPointer { w in
                for r in 0..<rowCount { VectorOps.rmsNorm(p.baseAddress! + r * width, count: width, weight: w.baseAddress!, eps: eps) }
            }
        }
    }
}
