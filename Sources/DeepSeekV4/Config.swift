// Config.swift: the DeepSeek-V4 config.json, decoded strictly, with the per-layer schedule.
//
// Accepts both spellings found in the wild (spec §1): the released checkpoint's
// (`compress_ratios` with L+1 entries, `num_hash_layers`, flat `rope_scaling`,
// `qk_rope_head_dim`) and transformers' `save_pretrained` (`layer_types`,
// `mlp_layer_types`, `compress_rates`, nested `rope_parameters`, `partial_rotary_factor`).
import Checkpoint
import Foundation

/// Attention kind of one layer (spec §1.2).
public enum AttentionKind: String, Sendable, Equatable {
    /// Sliding window only.
    case sliding = "sliding_attention"
    /// Compressed Sparse Attention: overlapping compression (ratio 4) + Lightning Indexer top-k.
    case csa = "compressed_sparse_attention"
    /// Heavily Compressed Attention: dense over non-overlapping compressed entries (ratio 128).
    case hca = "heavily_compressed_attention"
}

/// Routing kind of one MoE layer (spec §8.1).
public enum RoutingKind: String, Sendable, Equatable {
    /// Experts fixed per token id by `tid2eid`.
    case hash = "hash_moe"
    /// sqrt-softplus scores, top-k with a selection-only bias.
    case score = "moe"
}

/// RoPE parameters of one rotary family (spec §10).
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

/// A config error, naming the key at fault.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let message: String
    public var description: String { "config.json: '\(key)': \(message)" }
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
            throw ConfigError(key: "(file)", message: "cannot read \(path)")
        }
        return try decode(json: data)
    }

    /// Decodes and validates a config.json body.
    public static func decode(json data: Data) throws -> DeepSeekV4Config {
        guard let any = try? JSONSerialization.jsonObject(with: data), let obj = any as? [String: Any] else {
            throw ConfigError(key: "(file)", message: "not a JSON object")
        }
        return try ConfigReader(obj).read()
    }
}

/// Typed access to the raw JSON with located errors.
private struct ConfigReader {
    let obj: [String: Any]
    init(_ obj: [String: Any]) { self.obj = obj }

    func has(_ key: String) -> Bool { obj[key] != nil && !(obj[key] is NSNull) }

    func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
        guard has(key) else {
            if let fallback { return fallback }
            throw ConfigError(key: key, message: "required key is missing")
        }
        guard let n = obj[key] as? NSNumber, !JSONNumber.isBool(obj[key]), n.doubleValue == n.doubleValue.rounded() else {
            throw ConfigError(key: key, message: "expected an integer, got \(obj[key]!)")
        }
        return n.intValue
    }

    func double(_ key: String, _ fallback: Double? = nil) throws -> Double {
        guard has(key) else {
            if let fallback { return fallback }
            throw ConfigError(key: key, message: "required key is missing")
        }
        guard let n = obj[key] as? NSNumber, !JSONNumber.isBool(obj[key]) else {
            throw ConfigError(key: key, message: "expected a number, got \(obj[key]!)")
        }
        return n.doubleValue
    }

    func positive(_ key: String, _ fallback: Int? = nil) throws -> Int {
        let v = try int(key, fallback)
        guard v > 0 else { throw ConfigError(key: key, message: "must be positive, got \(v)") }
        return v
    }

    func rope(_ dict: [String: Any], key: String, theta: Double) throws -> RopeParameters {
        func num(_ k: String) throws -> Double? {
            guard let v = dict[k], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber else { throw ConfigError(key: "\(key).\(k)", message: "expected a number") }
            return n.doubleValue
        }
        let type = (dict["rope_type"] as? String) ?? (dict["type"] as? String) ?? "default"
        var p = RopeParameters(theta: try num("rope_theta") ?? theta, type: type)
        switch type {
        case "default":
            break
        case "yarn":
            guard let f = try num("factor") else { throw ConfigError(key: "\(key).factor", message: "yarn needs a factor") }
            guard let orig = try num("original_max_position_embeddings") else {
                throw ConfigError(key: "\(key).original_max_position_embeddings", message: "yarn needs it")
            }
            p.factor = f
            p.originalMaxPositionEmbeddings = Int(orig)
            p.betaFast = try num("beta_fast").flatMap { $0 == 0 ? nil : $0 } ?? 32
            p.betaSlow = try num("beta_slow").flatMap { $0 == 0 ? nil : $0 } ?? 1
            // V4 never scales cos/sin (spec §10): transformers forces attention_factor = 1.
            p.attentionFactor = try num("attention_factor") ?? 1
            if let t = dict["truncate"] as? Bool { p.truncate = t }
        default:
            throw ConfigError(key: "\(key).rope_type", message: "unsupported RoPE type '\(type)' (expected default or yarn)")
        }
        return p
    }

    func read() throws -> DeepSeekV4Config {
        if let mt = obj["model_type"] as? String, !["deepseek_v4"].contains(mt) {
            throw ConfigError(key: "model_type", message: "expected deepseek_v4, got '\(mt)'")
        }
        let layers = try positive("num_hidden_layers")
        let hidden = try positive("hidden_size")
        let headDim = try positive("head_dim")
        let heads = try positive("num_attention_heads")
        let kvHeads = try int("num_key_value_heads", 1)
        guard kvHeads == 1 else { throw ConfigError(key: "num_key_value_heads", message: "V4 has one shared K=V head, got \(kvHeads)") }

        // Partial RoPE: qk_rope_head_dim (released) or partial_rotary_factor (transformers).
        var ropeDim: Int
        if has("qk_rope_head_dim") {
            ropeDim = try positive("qk_rope_head_dim")
        } else if has("partial_rotary_factor") {
            ropeDim = Int(Double(headDim) * (try double("partial_rotary_factor")))
        } else {
            ropeDim = headDim * 64 / 512
        }
        guard ropeDim > 0, ropeDim % 2 == 0, ropeDim <= headDim else {
            throw ConfigError(key: "qk_rope_head_dim", message: "rope dims \(ropeDim) must be even and at most head_dim \(headDim)")
        }

        // Compression ratios per attention kind.
        // Explicit rates win; otherwise CSA is 4 (the overlapping compressor) and HCA is the
        // other nonzero value of `compress_ratios` (128 in the releases).
        var csaRatio = 4
        var hcaRatio = 128
        var explicitHCA = false
        if let rates = obj["compress_rates"] as? [String: Any] {
            if let v = rates["compressed_sparse_attention"] as? NSNumber { csaRatio = v.intValue }
            if let v = rates["heavily_compressed_attention"] as? NSNumber { hcaRatio = v.intValue; explicitHCA = true }
        }
        csaRatio = try int("compress_rate_csa", csaRatio)
        if has("compress_rate_hca") { hcaRatio = try int("compress_rate_hca"); explicitHCA = true }
        if !explicitHCA, obj["layer_types"] == nil || obj["layer_types"] is NSNull,
            let ratios = (obj["compress_ratios"] as? [NSNumber])?.map(\.intValue)
        {
            let others = Set(ratios.filter { $0 != 0 && $0 != csaRatio })
            if others.count > 1 {
                throw ConfigError(key: "compress_ratios", message: "more than one HCA ratio: \(others.sorted())")
            }
            if let only = others.first { hcaRatio = only }
        }
        guard csaRatio > 0, hcaRatio > 0, csaRatio != hcaRatio else {
            throw ConfigError(key: "compress_rates", message: "CSA and HCA ratios must be positive and distinct, got \(csaRatio) and \(hcaRatio)")
        }

        // Attention schedule.
        var kinds: [AttentionKind]
        var mtpLayers = try int("num_nextn_predict_layers", 0)
        if let lt = obj["layer_types"], !(lt is NSNull) {
            guard let names = lt as? [String] else { throw ConfigError(key: "layer_types", message: "expected a list of strings") }
            kinds = try names.enumerated().map { i, n in
                guard let k = AttentionKind(rawValue: n) else {
                    throw ConfigError(key: "layer_types[\(i)]", message: "unknown layer type '\(n)'")
                }
                return k
            }
            guard kinds.count == layers else {
                throw ConfigError(key: "layer_types", message: "has \(kinds.count) entries for \(layers) layers")
            }
        } else if let cr = obj["compress_ratios"], !(cr is NSNull) {
            guard let ratios = (cr as? [NSNumber])?.map(\.intValue) else {
                throw ConfigError(key: "compress_ratios", message: "expected a list of integers")
            }
            guard ratios.count == layers || ratios.count == layers + 1 else {
                throw ConfigError(key: "compress_ratios", message: "has \(ratios.count) entries; expected \(layers) or \(layers + 1) (the last for the MTP block)")
            }
            if ratios.count == layers + 1 { mtpLayers = max(mtpLayers, 1) }
            kinds = try ratios.prefix(layers).enumerated().map { i, r in
                switch r {
                case 0: return .sliding
                case csaRatio: return .csa
                case hcaRatio: return .hca
                default:
                    throw ConfigError(key: "compress_ratios[\(i)]", message: "ratio \(r) is neither 0, the CSA ratio \(csaRatio) nor the HCA ratio \(hcaRatio)")
                }
            }
        } else {
            throw ConfigError(key: "layer_types", message: "the layer schedule is missing: give layer_types or compress_ratios")
        }

        // MoE schedule.
        var routing: [RoutingKind]
        if let mt = obj["mlp_layer_types"], !(mt is NSNull) {
            guard let names = mt as? [String] else { throw ConfigError(key: "mlp_layer_types", message: "expected a list of strings") }
            routing = try names.enumerated().map { i, n in
                guard let k = RoutingKind(rawValue: n) else {
                    throw ConfigError(key: "mlp_layer_types[\(i)]", message: "unknown MLP type '\(n)'")
                }
                return k
            }
            guard routing.count == layers else {
                throw ConfigError(key: "mlp_layer_types", message: "has \(routing.count) entries for \(layers) layers")
            }
        } else {
            let hashLayers = try int("num_hash_layers", 3)
            guard hashLayers >= 0 else { throw ConfigError(key: "num_hash_layers", message: "must not be negative") }
            routing = (0..<layers).map { $0 < hashLayers ? .hash : .score }
        }

        // RoPE families.
        let ropeTheta = try double("rope_theta", 10000)
        let compressTheta = try double("compress_rope_theta", 160000)
        var main = RopeParameters(theta: ropeTheta, type: "default")
        var compress = RopeParameters(theta: compressTheta, type: "default")
        if let rp = obj["rope_parameters"] as? [String: Any] {
            if let m = rp["main"] as? [String: Any], let c = rp["compress"] as? [String: Any] {
                main = try rope(m, key: "rope_parameters.main", theta: ropeTheta)
                compress = try rope(c, key: "rope_parameters.compress", theta: compressTheta)
            } else {
                var flat = rp
                flat["rope_theta"] = compressTheta
                compress = try rope(flat, key: "rope_parameters", theta: compressTheta)
            }
        } else if let rs = obj["rope_scaling"] as? [String: Any] {
            var flat = rs
            flat["rope_theta"] = compressTheta
            compress = try rope(flat, key: "rope_scaling", theta: compressTheta)
        }
        guard main.type == "default" else {
            throw ConfigError(key: "rope_parameters.main", message: "sliding layers use plain RoPE, got '\(main.type)'")
        }

        let scoring = (obj["scoring_func"] as? String) ?? "sqrtsoftplus"
        guard scoring == "sqrtsoftplus" else {
            throw ConfigError(key: "scoring_func", message: "only sqrtsoftplus (DeepSeek-V4) is supported, got '\(scoring)'")
        }
        if let act = obj["hidden_act"] as? String, act != "silu" {
            throw ConfigError(key: "hidden_act", message: "only silu is supported, got '\(act)'")
        }
        if let tie = obj["tie_word_embeddings"] as? Bool, tie {
            throw ConfigError(key: "tie_word_embeddings", message: "V4 does not tie embeddings")
        }
        var eos: [Int] = []
        if let e = obj["eos_token_id"] as? NSNumber { eos = [e.intValue] } else if let e = obj["eos_token_id"] as? [NSNumber] { eos = e.map(\.intValue) }

        let c = DeepSeekV4Config(
            vocabSize: try positive("vocab_size"),
            hiddenSize: hidden,
            layerCount: layers,
            headCount: heads,
            headDim: headDim,
            ropeDim: ropeDim,
            qLoraRank: try positive("q_lora_rank"),
            outputGroups: try positive("o_groups"),
            outputLoraRank: try positive("o_lora_rank"),
            slidingWindow: try positive("sliding_window"),
            csaRatio: csaRatio,
            hcaRatio: hcaRatio,
            indexHeadCount: try positive("index_n_heads"),
            indexHeadDim: try positive("index_head_dim"),
            indexTopK: try positive("index_topk"),
            routedExpertCount: try positive(has("n_routed_experts") ? "n_routed_experts" : "num_local_experts"),
            sharedExpertCount: try int("n_shared_experts", 1),
            expertsPerToken: try positive("num_experts_per_tok"),
            moeIntermediateSize: try positive(has("moe_intermediate_size") ? "moe_intermediate_size" : "intermediate_size"),
            routedScalingFactor: Float(try double("routed_scaling_factor", 1.5)),
            swigluLimit: Float(try double("swiglu_limit", 10)),
            hcMult: try positive("hc_mult", 4),
            hcSinkhornIterations: try positive("hc_sinkhorn_iters", 20),
            hcEps: Float(try double("hc_eps", 1e-6)),
            rmsNormEps: Float(try double("rms_norm_eps", 1e-6)),
            maxPositionEmbeddings: try positive("max_position_embeddings", 1 << 20),
            mainRope: main,
            compressRope: compress,
            attentionKinds: kinds,
            routingKinds: routing,
            bosTokenId: has("bos_token_id") ? try int("bos_token_id") : nil,
            eosTokenIds: eos,
            mtpLayerCount: mtpLayers)
        try c.validate()
        return c
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
