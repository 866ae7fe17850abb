// ConfigFile.swift: config.json exactly as written, decoded with Codable: every key the
// engine reads, in both spellings (the release's and transformers'), typed and optional.
// Which keys are required, and how the spellings combine, is `ConfigReader`'s business; a
// value of the wrong type stops here with its dotted, indexed key.
import Checkpoint
import Foundation

/// RoPE keys of one family, as `rope_scaling` or a `rope_parameters` section spells them.
struct RopeFields: Decodable, Equatable {
    var ropeType: String?
    /// The legacy spelling of `rope_type` (the release's `rope_scaling`).
    var type: String?
    var ropeTheta: Double?
    var factor: Double?
    var originalMaxPositionEmbeddings: Double?
    var betaFast: Double?
    var betaSlow: Double?
    var attentionFactor: Double?
    var truncate: Bool?

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", type, ropeTheta = "rope_theta", factor
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case betaFast = "beta_fast", betaSlow = "beta_slow", attentionFactor = "attention_factor", truncate
    }
}

/// `rope_parameters`: transformers' nested `{main, compress}` families, or one flat family.
struct RopeSection: Decodable {
    var flat: RopeFields
    var main: RopeFields?
    var compress: RopeFields?
    /// Whether either nested family was written (even as null).
    var isNested: Bool

    enum CodingKeys: String, CodingKey { case main, compress }

    init(from decoder: any Decoder) throws {
        flat = try RopeFields(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        isNested = c.contains(.main) || c.contains(.compress)
        main = try c.decodeIfPresent(RopeFields.self, forKey: .main)
        compress = try c.decodeIfPresent(RopeFields.self, forKey: .compress)
    }
}

/// `eos_token_id`: one id or a list of them.
struct TokenIds: Decodable {
    var ids: [Int]

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let one = try? c.decode(Int.self) { ids = [one] } else { ids = try c.decode([Int].self) }
    }
}

/// Every key of config.json that dsv4 reads; nil when absent or null.
struct ConfigFile: Decodable {
    var modelType: String?
    var vocabSize: Int?
    var hiddenSize: Int?
    var numHiddenLayers: Int?
    var numAttentionHeads: Int?
    var numKeyValueHeads: Int?
    var headDim: Int?
    var qkRopeHeadDim: Int?
    var partialRotaryFactor: Double?
    var qLoraRank: Int?
    var oGroups: Int?
    var oLoraRank: Int?
    var slidingWindow: Int?
    var layerTypes: [String]?
    var compressRatios: [Int]?
    var compressRates: [String: Int]?
    var compressRateCSA: Int?
    var compressRateHCA: Int?
    var indexNHeads: Int?
    var indexHeadDim: Int?
    var indexTopK: Int?
    var nRoutedExperts: Int?
    var numLocalExperts: Int?
    var nSharedExperts: Int?
    var numExpertsPerTok: Int?
    var moeIntermediateSize: Int?
    var intermediateSize: Int?
    var mlpLayerTypes: [String]?
    var numHashLayers: Int?
    var scoringFunc: String?
    var routedScalingFactor: Double?
    var swigluLimit: Double?
    var hiddenAct: String?
    var hcMult: Int?
    var hcSinkhornIters: Int?
    var hcEps: Double?
    var rmsNormEps: Double?
    var ropeTheta: Double?
    var compressRopeTheta: Double?
    var ropeParameters: RopeSection?
    var ropeScaling: RopeFields?
    var maxPositionEmbeddings: Int?
    var numNextnPredictLayers: Int?
    var tieWordEmbeddings: Bool?
    var bosTokenId: Int?
    var eosTokenId: TokenIds?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", qkRopeHeadDim = "qk_rope_head_dim"
        case partialRotaryFactor = "partial_rotary_factor", qLoraRank = "q_lora_rank", oGroups = "o_groups"
        case oLoraRank = "o_lora_rank", slidingWindow = "sliding_window", layerTypes = "layer_types"
        case compressRatios = "compress_ratios", compressRates = "compress_rates"
        case compressRateCSA = "compress_rate_csa", compressRateHCA = "compress_rate_hca"
        case indexNHeads = "index_n_heads", indexHeadDim = "index_head_dim", indexTopK = "index_topk"
        case nRoutedExperts = "n_routed_experts", numLocalExperts = "num_local_experts"
        case nSharedExperts = "n_shared_experts", numExpertsPerTok = "num_experts_per_tok"
        case moeIntermediateSize = "moe_intermediate_size", intermediateSize = "intermediate_size"
        case mlpLayerTypes = "mlp_layer_types", numHashLayers = "num_hash_layers", scoringFunc = "scoring_func"
        case routedScalingFactor = "routed_scaling_factor", swigluLimit = "swiglu_limit", hiddenAct = "hidden_act"
        case hcMult = "hc_mult", hcSinkhornIters = "hc_sinkhorn_iters", hcEps = "hc_eps", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", compressRopeTheta = "compress_rope_theta"
        case ropeParameters = "rope_parameters", ropeScaling = "rope_scaling"
        case maxPositionEmbeddings = "max_position_embeddings", numNextnPredictLayers = "num_nextn_predict_layers"
        case tieWordEmbeddings = "tie_word_embeddings", bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
    }

    /// Decodes a config.json body.
    /// - Throws: `ConfigError` naming the key (dotted and indexed, `rope_parameters.compress.factor`,
    ///   `compress_ratios[2]`) whose value has the wrong type, with the value found.
    static func decode(_ data: Data) throws -> ConfigFile {
        guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
            throw ConfigError(key: "(file)", message: "not a JSON object")
        }
        do {
            return try JSONDecoder().decode(ConfigFile.self, from: data)
        } catch let error as DecodingError {
            throw located(error, in: data)
        }
    }

    /// A decoding error as a ConfigError on the key it happened at.
    private static func located(_ error: DecodingError, in data: Data) -> ConfigError {
        let (path, expected): ([any CodingKey], String) =
            switch error {
            case .typeMismatch(let type, let c): (c.codingPath, describe(type))
            case .valueNotFound(let type, let c): (c.codingPath, describe(type))
            case .dataCorrupted(let c): (c.codingPath, "a value that fits")
            case .keyNotFound(let k, let c): (c.codingPath + [k], "a value")
            @unknown default: ([], "a valid value")
            }
        let key = path.enumerated().map { i, k in
            k.intValue.map { "[\($0)]" } ?? (i == 0 ? k.stringValue : "." + k.stringValue)
        }.joined()
        var found: Any? = try? JSONSerialization.jsonObject(with: data)
        for k in path {
            if let i = k.intValue { found = (found as? [Any]).flatMap { i < $0.count ? $0[i] : nil } } else { found = (found as? [String: Any])?[k.stringValue] }
        }
        let got = found.map { JSONNumber.isBool($0) ? "\($0 as! Bool)" : "\($0)" } ?? "nothing"
        return ConfigError(key: key.isEmpty ? "(file)" : key, message: "expected \(expected), got \(got)")
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: "an integer"
        case is Double.Type: "a number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is [Any].Type, is [Int].Type, is [String].Type: "a list"
        default: "a JSON object"
        }
    }
}
