// DeepSeekV4Model.swift: the whole V4 forward pass over a chunk of one sequence (transformers' modeling_deepseek_v4.py, DeepseekV4Model.forward).
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
import Tensors

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
public final class DeepSeekV4Model: CausalLM, @unchecked Sendable {
    public let config: DeepSeekV4Config
    public let store: TensorStore
    let weights: ModelWeights
    /// Runs the routed experts. Settable so that a composition root can swap in an executor
    /// built over `routedExperts` (expert parallelism) before the first forward pass.
    public var executor: any ExpertExecutor
    let activation: SwiGLU
    /// `[layer][expert]` views of the routed experts' mapped weights (nothing read yet).
    public var routedExperts: [[ExpertWeights]] { weights.experts }
    /// The routed experts' activation (SwiGLU with the config's clamp).
    public var expertActivation: SwiGLU { activation }
    let mainRope: RotaryEmbedding
    let compressRope: RotaryEmbedding
    let cacheMap: CacheMap
    /// How history pages store compressed entries and indexer keys.
    public let kvCacheDType: KVCacheDType
    /// Sees every CSA layer's indexer picks (layer, position of the first query, the picks of
    /// each query), for diagnostics such as `dsv4 bench cache-dtype`. Called on the forward's thread.
    public var indexerObserver: ((_ layer: Int, _ position: Int, _ picks: [[Int]]) -> Void)?

    /// Tensors in the checkpoint that the main model does not read (MTP block, extras).
    public var unusedTensors: [String] { weights.unusedTensors }
    /// The unused tensors of the multi-token-prediction block (`mtp.*`, `model.mtp.*`).
    public var mtpTensors: [String] { weights.unusedTensors.filter(WeightNames.isMTP) }
    /// The unused tensors that are not the MTP block's: a converter's extras, or a misnamed tensor.
    public var unknownTensors: [String] { weights.unusedTensors.filter { !WeightNames.isMTP($0) } }

    /// Loads `config.json` and the safetensors weights of `directory`.
    /// - Parameters:
    ///   - executor: runs routed experts; nil builds a `LocalExpertExecutor`.
    ///   - pageTokens: positions per history page (see `init(config:store:executor:pageTokens:kvCacheDType:)`).
    ///   - kvCacheDType: how history pages store compressed entries and indexer keys.
    ///   - progress: called after each safetensors shard is mapped and validated.
    public convenience init(
        directory: String, executor: (any ExpertExecutor)? = nil, pageTokens: Int? = nil, kvCacheDType: KVCacheDType = .f32,
        progress: ((LoadProgress) -> Void)? = nil
    ) throws {
        let config = try DeepSeekV4Config.load(directory: directory)
        let store = try TensorStore(directory: directory, progress: progress)
        try self.init(config: config, store: store, executor: executor, pageTokens: pageTokens, kvCacheDType: kvCacheDType)
    }

    /// - Parameters:
    ///   - pageTokens: positions per history page (rounded up to a multiple of every
    ///     compression ratio); nil picks the smallest such multiple ≥ 64.
    ///   - kvCacheDType: how history pages store compressed entries and indexer keys (f32: exact).
    public init(
        config: DeepSeekV4Config, store: TensorStore, executor: (any ExpertExecutor)? = nil, pageTokens: Int? = nil,
        kvCacheDType: KVCacheDType = .f32
    ) throws {
        self.config = config
        self.store = store
        weights = try ModelWeights.load(config: config, store: store)
        activation = SwiGLU(limit: config.swigluLimit)
        self.executor = executor ?? LocalExpertExecutor(experts: weights.experts, activation: activation)
        mainRope = RotaryEmbedding(dim: config.ropeDim, parameters: config.mainRope)
        compressRope = RotaryEmbedding(dim: config.ropeDim, parameters: config.compressRope)
        cacheMap = CacheMap(config: config, pageTokens: pageTokens, dtype: kvCacheDType)
        self.kvCacheDType = kvCacheDType
    }

    /// A fresh single-sequence state holding its own buffers.
    public func makeState() -> SequenceState { SequenceState(map: cacheMap) }

    /// Runs `tokens` (the next tokens of the sequence in `state`) and returns their logits,
    /// `[tokens.count, vocabSize]`, or only the last row when `lastOnly`.
    public func forward(tokens: [Int], state: SequenceState, lastOnly: Bool = false) throws -> [Float] {
        guard !tokens.isEmpty else { throw ModelError.emptyInput }
        try validate(tokens: tokens, position: state.position)
        state.reserve(positions: state.position + tokens.count)
        let step = SequenceStep(
            tokens: tokens, position: state.position, state: state.state, pages: state.pages, logits: lastOnly ? .last : .all)
        let out = try forward([step])
        state.position += tokens.count
        return out[0]
    }

    func validate(tokens: [Int], position: Int) throws {
        for (i, id) in tokens.enumerated() where id < 0 || id >= config.vocabSize {
            throw ModelError.tokenOutOfRange(index: position + i, id: id, vocabSize: config.vocabSize)
        }
        guard position + tokens.count <= config.maxPositionEmbeddings else {
            throw ModelError.contextOverflow(length: position + tokens.count, maximum: config.maxPositionEmbeddings)
        }
    }

    // MARK: - CausalLM

    public var vocabSize: Int { config.vocabSize }
    public var maxPositions: Int { config.maxPositionEmbeddings }
    public var cacheLayout: CacheLayout { cacheMap.layout }
    public var eosTokenIds: [Int] { config.eosTokenIds }
    public func initializeState(_ state: UnsafeMutablePointer<Float>) { cacheMap.initialize(state) }

    /// One step over many sequences: matrix products over all their tokens together,
    /// attention per sequence over its own cache.
    public func forward(_ steps: [SequenceStep]) throws -> [[Float]] {
        let c = config
        let D = c.hiddenSize
        let N = c.hcMult
        var segments: [BatchSegment] = []
        var tokens: [Int] = []
        var positions: [Int] = []
        for s in steps {
            guard !s.tokens.isEmpty else { throw ModelError.emptyInput }
            try validate(tokens: s.tokens, position: s.position)
            precondition(s.pages.count >= cacheMap.layout.pageCount(forPositions: s.position + s.tokens.count), "block table too short")
            segments.append(BatchSegment(row: tokens.count, count: s.tokens.count, position: s.position, state: s.state, pages: s.pages, snapshot: s.snapshot))
            tokens += s.tokens
            positions += (0..<s.tokens.count).map { s.position + $0 }
        }
        let T = tokens.count
        if T == 0 { return steps.map { _ in [] } }
        let ids = tokens.map { Int32($0) }

        // Embedding, copied into every stream.
        var X = [Float](repeating: 0, count: T * N * D)
        X.withUnsafeMutableBufferPointer { xp in
            for t in 0..<T {
                let row = weights.embed.row(tokens[t])
                row.withUnsafeBufferPointer { r in
                    for i in 0..<N { (xp.baseAddress! + (t * N + i) * D).update(from: r.baseAddress!, count: D) }
                }
            }
        }

        // Each boundary between blocks is one fused mHC step: the expand of the block before,
        // the mixes and input of the next one.
        var (mix, u) = HyperConnection.step(streams: &X, expanding: nil, next: weights.layers[0].attentionHC, tokenCount: T, config: c)
        for l in 0..<c.layerCount {
            let lw = weights.layers[l]
            let kind = c.attentionKinds[l]
            let rope = kind == .sliding ? mainRope : compressRope

            Self.rmsNormRows(&u, rowCount: T, width: D, weight: lw.attentionNorm, eps: c.rmsNormEps)
            let observe = indexerObserver.map { f in { (picks: [[Int]], position: Int) in f(l, position, picks) } }
            let a = Attention.forward(
                lw.attention, kind: kind, slots: cacheMap.layers[l], h: u, positions: positions, segments: segments, rope: rope, config: c,
                observe: observe)
            (mix, u) = HyperConnection.step(streams: &X, expanding: (a, mix), next: lw.ffnHC, tokenCount: T, config: c)

            Self.rmsNormRows(&u, rowCount: T, width: D, weight: lw.ffnNorm, eps: c.rmsNormEps)
            let f = MoE.forward(lw.moe, layer: l, h: u, tokens: ids, tokenCount: T, executor: executor, activation: activation, config: c)
            if l + 1 < c.layerCount {
                (mix, u) = HyperConnection.step(streams: &X, expanding: (f, mix), next: weights.layers[l + 1].attentionHC, tokenCount: T, config: c)
            } else {
                HyperConnection.expand(streams: &X, blockOutput: f, mix: mix, tokenCount: T, hidden: D, streamCount: N)
            }
        }

        // HC head, final norm, vocabulary projection for the rows each step asked for.
        var wanted: [Int] = []
        for (s, seg) in zip(steps, segments) {
            switch s.logits {
            case .none: break
            case .last: wanted.append(seg.row + seg.count - 1)
            case .all: wanted += Array(seg.row..<(seg.row + seg.count))
            }
        }
        var logits: [Float] = []
        if !wanted.isEmpty {
            var tail = [Float](repeating: 0, count: wanted.count * N * D)
            for (i, r) in wanted.enumerated() {
                tail.replaceSubrange((i * N * D)..<((i + 1) * N * D), with: X[(r * N * D)..<((r + 1) * N * D)])
            }
            let rows = wanted.count
            let m = HyperConnection.mixes(weights.hcHeadFn, streams: tail, tokenCount: rows, eps: c.rmsNormEps)
            let pre = (0..<(rows * N)).map { k in
                VectorOps.sigmoid(m[k] * weights.hcHeadScale[0] + weights.hcHeadBase[k % N]) + c.hcEps
            }
            var y = HyperConnection.collapse(streams: tail, weights: pre, tokenCount: rows, hidden: D, streamCount: N)
            Self.rmsNormRows(&y, rowCount: rows, width: D, weight: weights.norm, eps: c.rmsNormEps)
            logits = weights.head.apply(y, tokenCount: rows)
        }
        var out: [[Float]] = []
        var cursor = 0
        let V = c.vocabSize
        for (s, seg) in zip(steps, segments) {
            let n = s.logits == .none ? 0 : (s.logits == .last ? 1 : seg.count)
            out.append(Array(logits[(cursor * V)..<((cursor + n) * V)]))
            cursor += n
        }
        return out
    }

    static func rmsNormRows(_ x: inout [Float], rowCount: Int, width: Int, weight: [Float], eps: Float) {
        x.withUnsafeMutableBufferPointer { p in
            weight.withUnsafeBufferPointer { w in
                VectorOps.rmsNormRows(p.baseAddress!, rows: rowCount, count: width, stride: width, weight: w.baseAddress!, eps: eps)
            }
        }
    }
}
