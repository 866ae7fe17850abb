// Config.swift: the DeepSeek-V4 config.json, decoded strictly, with the per-layer schedule.
//
// Accepts both spellings found in the wild (transformers' configuration_deepseek_v4.py,
// DeepseekV4Config, reads both): the released checkpoint's (`compress_ratios` with L+1 entries, `num_hash_layers`, flat `rope_scaling`,
// `qk_rope_head_dim`) and transformers' `save_pretrained` (`layer_types`,
// `mlp_layer_types`, `compress_rates`, nested `rope_parameters`, `partial_rotary_factor`).
// Keys that change the math are required; both spellings given together must agree (see
// the NOTE on `ConfigReader`).
import Checkpoint
import Foundation

/// Attention kind of one layer (DeepseekV4Config.layer_types).
public enum AttentionKind: String, Sendable, Equatable {
    /// Sliding window only.
    case sliding = "sliding_attention"
    /// Compressed Sparse Attention: overlapping compression (ratio 4) + Lightning Indexer top-k.
    case csa = "compressed_sparse_attention"
    /// Heavily Compressed Attention: dense over non-overlapping compressed entries (ratio 128).
    case hca = "heavily_compressed_attention"
}

/// Routing kind of one MoE layer (DeepseekV4Config.mlp_layer_types).
public enum RoutingKind: String, Sendable, Equatable {
    /// Experts fixed per token id by `tid2eid`.
    case hash = "hash_moe"
    /// sqrt-softplus scores, top-k with a selection-only bias.
    case score = "moe"
}

/// RoPE parameters of one rotary family (transformers' modeling_deepseek_v4.py, DeepseekV4RotaryEmbedding).
public struct RopeParameters: Sendable, Equatable {
    public var theta: Double
    /// "default" or "yarn".
    public var type: String
    public var factor: Double = 1
    public var originalMaxPositionEmbeddings: Int = 0
    public var betaFast: Double = 32
    public var betaSlow: Double = 1
    /// Multiplies cos and sin; V4 forces 1.
    public var attentionFactor: Double = 1
    public var truncate: Bool = true
}

/// A config error, naming the key at fault and, when known, the file.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    /// The key at fault, dotted and indexed (`rope_parameters.compress.factor`, `layer_types[2]`).
    public let key: String
    public let message: String
    /// The config.json it was read from (nil for a body decoded from memory).
    public var path: String?

    public init(key: String, message: String, path: String? = nil) {
        self.key = key
        self.message = message
        self.path = path
    }

    public var description: String { "\(path ?? "config.json"): '\(key)': \(message)" }
}

/// The model hyper-parameters dsv4 needs, after validation.
public struct DeepSeekV4Config: Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var headDim: Int
    public var ropeDim: Int
    public var qLoraRank: Int
    public var outputGroups: Int
    public var outputLoraRank: Int
    public var slidingWindow: Int
    public var csaRatio: Int
    public var hcaRatio: Int
    public var indexHeadCount: Int
    public var indexHeadDim: Int
    public var indexTopK: Int
    public var routedExpertCount: Int
    public var sharedExpertCount: Int
    public var expertsPerToken: Int
    public var moeIntermediateSize: Int
    public var routedScalingFactor: Float
    public var swigluLimit: Float
    public var hcMult: Int
    public var hcSinkhornIterations: Int
    public var hcEps: Float
    public var rmsNormEps: Float
    public var maxPositionEmbeddings: Int
    public var mainRope: RopeParameters
    public var compressRope: RopeParameters
    public var attentionKinds: [AttentionKind]
    public var routingKinds: [RoutingKind]
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    /// MTP layers the checkpoint carries (not run by this model).
    public var mtpLayerCount: Int

    /// Compression ratio of layer `l` (0 for sliding-only layers).
    public func compressRatio(layer l: Int) -> Int {
        switch attentionKinds[l] {
        case .sliding: 0
        case .csa: csaRatio
        case .hca: hcaRatio
        }
    }

    /// Mixing weights per hyper-connection block: (2 + N)·N.
    public var hcMixCount: Int { (2 + hcMult) * hcMult }
}

extension DeepSeekV4Config {
    /// Reads and validates `config.json` in `directory`.
    public static func load(directory: String) throws -> DeepSeekV4Config {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(key: "(file)", message: "cannot read the file", path: path)
        }
        do {
            return try decode(json: data)
        } catch var e as ConfigError {
            e.path = path
            throw e
        }
    }

    /// Decodes and validates a config.json body.
    public static func decode(json data: Data) throws -> DeepSeekV4Config {
        try ConfigReader(try ConfigFile.decode(data)).read()
    }
}

/// The checks and combinations that turn a decoded `ConfigFile` into a config.
///
/// NOTE: which keys are required. transformers gives every key a default, but the released
/// `config.json` and transformers' own `save_pretrained` output both write every key
/// explicitly, and several differ between real models (`routed_scaling_factor` is 1.5 in
/// Flash, 2.5 in Pro). So a key that changes the math is required, in one of its two
/// spellings: the widths, `routed_scaling_factor`, `swiglu_limit`, `hc_mult`,
/// `hc_sinkhorn_iters`, `hc_eps`, `rms_norm_eps`, both RoPE thetas, the rope dims
/// (`qk_rope_head_dim` or `partial_rotary_factor`), the compressed layers' RoPE
/// (`rope_scaling` or `rope_parameters`), the attention schedule (`layer_types` or
/// `compress_ratios`), its ratios (`compress_rates` or the values of `compress_ratios`) and the
/// MoE schedule (`mlp_layer_types` or `num_hash_layers`). Where both spellings are given they
/// must agree. Defaults remain only where a key has one legal value or no effect on the
/// logits: `num_key_value_heads` (1), `scoring_func` (sqrtsoftplus), `hidden_act` (silu),
/// `num_nextn_predict_layers` (0), the token ids, and the YaRN betas (32, 1) as in transformers.
struct ConfigReader {
    let file: ConfigFile
    init(_ file: ConfigFile) { self.file = file }

    /// `value`, or a "required key is missing" error on `key`.
    func required<T>(_ value: T?, _ key: ConfigFile.CodingKeys) throws -> T {
        guard let value else { throw ConfigError(key: key.rawValue, message: "required key is missing") }
        return value
    }

    /// A required positive integer (or `fallback` when absent).
    func positive(_ value: Int?, _ key: ConfigFile.CodingKeys, _ fallback: Int? = nil) throws -> Int {
        let v = try required(value ?? fallback, key)
        guard v > 0 else { throw ConfigError(key: key.rawValue, message: "must be positive, got \(v)") }
        return v
    }

    /// Layer kinds named by raw value, one per layer; nil when absent.
    func kindList<K: RawRepresentable>(_ names: [String]?, _ key: ConfigFile.CodingKeys, layers: Int, what: String) throws -> [K]?
    where K.RawValue == String {
        guard let names else { return nil }
        let kinds: [K] = try names.enumerated().map { i, n in
            guard let k = K(rawValue: n) else { throw ConfigError(key: "\(key.rawValue)[\(i)]", message: "unknown \(what) '\(n)'") }
            return k
        }
        guard kinds.count == layers else {
            throw ConfigError(key: key.rawValue, message: "has \(kinds.count) entries for \(layers) layers")
        }
        return kinds
    }

    func read() throws -> DeepSeekV4Config {
        if let mt = file.modelType, mt != "deepseek_v4" {
            throw ConfigError(key: "model_type", message: "expected deepseek_v4, got '\(mt)'")
        }
        let layers = try positive(file.numHiddenLayers, .numHiddenLayers)
        let headDim = try positive(file.headDim, .headDim)
        let kvHeads = file.numKeyValueHeads ?? 1
        guard kvHeads == 1 else { throw ConfigError(key: "num_key_value_heads", message: "V4 has one shared K=V head, got \(kvHeads)") }
        let schedule = try attentionSchedule(layers: layers)
        let (main, compress) = try ropeFamilies()
        try checkFixedChoices()
        let c = DeepSeekV4Config(
            vocabSize: try positive(file.vocabSize, .vocabSize),
            hiddenSize: try positive(file.hiddenSize, .hiddenSize),
            layerCount: layers,
            headCount: try positive(file.numAttentionHeads, .numAttentionHeads),
            headDim: headDim,
            ropeDim: try ropeDim(headDim: headDim),
            qLoraRank: try positive(file.qLoraRank, .qLoraRank),
            outputGroups: try positive(file.oGroups, .oGroups),
            outputLoraRank: try positive(file.oLoraRank, .oLoraRank),
            slidingWindow: try positive(file.slidingWindow, .slidingWindow),
            csaRatio: schedule.csa,
            hcaRatio: schedule.hca,
            indexHeadCount: try positive(file.indexNHeads, .indexNHeads),
            indexHeadDim: try positive(file.indexHeadDim, .indexHeadDim),
            indexTopK: try positive(file.indexTopK, .indexTopK),
            routedExpertCount: try positive(file.nRoutedExperts ?? file.numLocalExperts, file.nRoutedExperts == nil && file.numLocalExperts != nil ? .numLocalExperts : .nRoutedExperts),
            sharedExpertCount: try required(file.nSharedExperts, .nSharedExperts),
            expertsPerToken: try positive(file.numExpertsPerTok, .numExpertsPerTok),
            moeIntermediateSize: try positive(file.moeIntermediateSize ?? file.intermediateSize, file.moeIntermediateSize == nil && file.intermediateSize != nil ? .intermediateSize : .moeIntermediateSize),
            routedScalingFactor: Float(try required(file.routedScalingFactor, .routedScalingFactor)),
            swigluLimit: Float(try required(file.swigluLimit, .swigluLimit)),
            hcMult: try positive(file.hcMult, .hcMult),
            hcSinkhornIterations: try positive(file.hcSinkhornIters, .hcSinkhornIters),
            hcEps: Float(try required(file.hcEps, .hcEps)),
            rmsNormEps: Float(try required(file.rmsNormEps, .rmsNormEps)),
            maxPositionEmbeddings: try positive(file.maxPositionEmbeddings, .maxPositionEmbeddings),
            mainRope: main,
            compressRope: compress,
            attentionKinds: schedule.kinds,
            routingKinds: try routing(layers: layers),
            bosTokenId: file.bosTokenId,
            eosTokenIds: file.eosTokenId?.ids ?? [],
            mtpLayerCount: schedule.mtpLayers)
        try c.validate()
        return c
    }

    /// Keys with one legal value in V4 (or a default that is it).
    func checkFixedChoices() throws {
        let scoring = file.scoringFunc ?? "sqrtsoftplus"
        guard scoring == "sqrtsoftplus" else {
            throw ConfigError(key: "scoring_func", message: "only sqrtsoftplus (DeepSeek-V4) is supported, got '\(scoring)'")
        }
        if let act = file.hiddenAct, act != "silu" {
            throw ConfigError(key: "hidden_act", message: "only silu is supported, got '\(act)'")
        }
        if file.tieWordEmbeddings == true {
            throw ConfigError(key: "tie_word_embeddings", message: "V4 does not tie embeddings")
        }
    }

    /// Partial RoPE: qk_rope_head_dim (released) and/or partial_rotary_factor (transformers,
    /// which also writes qk_rope_head_dim); transformers truncates head_dim · factor.
    func ropeDim(headDim: Int) throws -> Int {
        let qkRope = try file.qkRopeHeadDim.map { try positive($0, .qkRopeHeadDim) }
        let factorDim = file.partialRotaryFactor.map { Int(Double(headDim) * $0) }
        if let qkRope, let factorDim, qkRope != factorDim {
            throw ConfigError(key: "partial_rotary_factor", message: "gives \(factorDim) rope dims (of head_dim \(headDim)) but qk_rope_head_dim is \(qkRope)")
        }
        guard let ropeDim = qkRope ?? factorDim else {
            throw ConfigError(key: "qk_rope_head_dim", message: "required key is missing (or give partial_rotary_factor)")
        }
        guard ropeDim > 0, ropeDim % 2 == 0, ropeDim <= headDim else {
            throw ConfigError(key: "qk_rope_head_dim", message: "rope dims \(ropeDim) must be even and at most head_dim \(headDim)")
        }
        return ropeDim
    }

    /// MoE schedule: mlp_layer_types and/or num_hash_layers (hash layers first).
    func routing(layers: Int) throws -> [RoutingKind] {
        var hashLayers: Int?
        if let n = file.numHashLayers {
            guard n >= 0, n <= layers else {
                throw ConfigError(key: "num_hash_layers", message: "must be between 0 and the \(layers) layers, got \(n)")
            }
            hashLayers = n
        }
        if let listed: [RoutingKind] = try kindList(file.mlpLayerTypes, .mlpLayerTypes, layers: layers, what: "MLP type") {
            if let hashLayers {
                let derived = (0..<layers).map { $0 < hashLayers ? RoutingKind.hash : .score }
                if let i = (0..<layers).first(where: { listed[$0] != derived[$0] }) {
                    throw ConfigError(key: "num_hash_layers", message: "\(hashLayers) hash layers disagree with mlp_layer_types[\(i)] '\(listed[i].rawValue)'")
                }
            }
            return listed
        }
        guard let hashLayers else {
            throw ConfigError(key: "mlp_layer_types", message: "the MoE schedule is missing: give mlp_layer_types or num_hash_layers")
        }
        return (0..<layers).map { $0 < hashLayers ? .hash : .score }
    }
}

extension DeepSeekV4Config {
    /// Cross-key consistency checks.
    public func validate() throws {
        guard (headCount * headDim) % outputGroups == 0, headCount % outputGroups == 0 else {
            throw ConfigError(key: "o_groups", message: "\(outputGroups) groups do not divide \(headCount) heads")
        }
        guard ropeDim <= indexHeadDim || !attentionKinds.contains(.csa) else {
            throw ConfigError(key: "index_head_dim", message: "must be at least the rope dims \(ropeDim)")
        }
        guard expertsPerToken <= routedExpertCount else {
            throw ConfigError(key: "num_experts_per_tok", message: "\(expertsPerToken) exceeds the \(routedExpertCount) routed experts")
        }
        guard sharedExpertCount <= 1 else {
            throw ConfigError(key: "n_shared_experts", message: "V4 has at most one shared expert, got \(sharedExpertCount)")
        }
        guard hcEps >= 0, rmsNormEps > 0 else { throw ConfigError(key: "rms_norm_eps", message: "must be positive") }
        if compressRope.type == "yarn" {
            guard compressRope.factor > 0, compressRope.originalMaxPositionEmbeddings > 0 else {
                throw ConfigError(key: "rope_scaling", message: "yarn factor and original_max_position_embeddings must be positive")
            }
        }
    }
}
