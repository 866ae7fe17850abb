// Config.swift: the DeepSeek-V4 config.json, decoded strictly, with the per-layer schedule.
//
// Accepts both spellings found in the wild (spec §1): the released checkpoint's
// (`compress_ratios` with L+1 entries, `num_hash_layers`, flat `rope_scaling`,
// `qk_rope_head_dim`) and transformers' `save_pretrained` (`layer_types`,
// `mlp_layer_types`, `compress_rates`, nested `rope_parameters`, `partial_rotary_factor`).
// Keys that change the math are required; both spellings given together must agree (see
// the NOTE on `ConfigReader`).
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
        guard let any = try? JSONSerialization.jsonObject(with: data), let obj = any as? [String: Any] else {
            throw ConfigError(key: "(file)", message: "not a JSON object")
        }
        return try ConfigReader(obj).read()
    }
}

/// Typed access to the raw JSON with located errors.
///
/// NOTE: which keys are required. transformers gives every key a default, but the released
/// `config.json` and transformers' own `save_pretrained` output both write every key of spec
/// §1 explicitly, and several differ between real models (`routed_scaling_factor` is 1.5 in
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

    /// A JSON object under `key`, nil when absent or null.
    func dict(_ key: String) throws -> [String: Any]? {
        guard has(key) else { return nil }
        guard let d = obj[key] as? [String: Any] else {
            throw ConfigError(key: key, message: "expected a JSON object, got \(obj[key]!)")
        }
        return d
    }

    /// A list of integers under `key`, nil when absent or null.
    func intList(_ key: String) throws -> [Int]? {
        guard has(key) else { return nil }
        guard let list = obj[key] as? [Any] else { throw ConfigError(key: key, message: "expected a list of integers") }
        return try list.enumerated().map { i, v in
            guard let n = JSONNumber.integer(v) else {
                throw ConfigError(key: "\(key)[\(i)]", message: "expected an integer, got \(v)")
            }
            return n
        }
    }

    /// A list of enum raw values under `key`, nil when absent or null.
    func kindList<K: RawRepresentable>(_ key: String, of _: K.Type, layers: Int, what: String) throws -> [K]? where K.RawValue == String {
        guard has(key) else { return nil }
        guard let names = obj[key] as? [Any] else { throw ConfigError(key: key, message: "expected a list of strings") }
        let kinds: [K] = try names.enumerated().map { i, n in
            guard let s = n as? String, let k = K(rawValue: s) else {
                throw ConfigError(key: "\(key)[\(i)]", message: "unknown \(what) '\(n)'")
            }
            return k
        }
        guard kinds.count == layers else {
            throw ConfigError(key: key, message: "has \(kinds.count) entries for \(layers) layers")
        }
        return kinds
    }

    func rope(_ dict: [String: Any], key: String, theta: Double) throws -> RopeParameters {
        func num(_ k: String) throws -> Double? {
            guard let v = dict[k], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber, !JSONNumber.isBool(v) else { throw ConfigError(key: "\(key).\(k)", message: "expected a number, got \(v)") }
            return n.doubleValue
        }
        let type = (dict["rope_type"] as? String) ?? (dict["type"] as? String) ?? "default"
        var p = RopeParameters(theta: theta, type: type)
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

    /// A RoPE base given at the top level (`topKey`) and/or inside a nested family (`nestedKey`):
    /// at least one is required, and both must agree.
    func theta(top topKey: String, nested: [String: Any]?, nestedKey: String) throws -> Double {
        var inner: Double?
        if let v = nested?["rope_theta"], !(v is NSNull) {
            guard let n = v as? NSNumber, !JSONNumber.isBool(v) else {
                throw ConfigError(key: "\(nestedKey).rope_theta", message: "expected a number, got \(v)")
            }
            inner = n.doubleValue
        }
        let top = has(topKey) ? try double(topKey) : nil
        switch (top, inner) {
        case (let t?, let i?):
            guard t == i else {
                throw ConfigError(key: "\(nestedKey).rope_theta", message: "is \(i) but \(topKey) is \(t)")
            }
            return i
        case (nil, let i?): return i
        case (let t?, nil): return t
        case (nil, nil): throw ConfigError(key: topKey, message: "required key is missing")
        }
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

        // Partial RoPE: qk_rope_head_dim (released) and/or partial_rotary_factor (transformers,
        // which also writes qk_rope_head_dim); transformers truncates head_dim · factor.
        let qkRope = has("qk_rope_head_dim") ? try positive("qk_rope_head_dim") : nil
        let factorDim = has("partial_rotary_factor") ? Int(Double(headDim) * (try double("partial_rotary_factor"))) : nil
        if let qkRope, let factorDim, qkRope != factorDim {
            throw ConfigError(key: "partial_rotary_factor", message: "gives \(factorDim) rope dims (of head_dim \(headDim)) but qk_rope_head_dim is \(qkRope)")
        }
        guard let ropeDim = qkRope ?? factorDim else {
            throw ConfigError(key: "qk_rope_head_dim", message: "required key is missing (or give partial_rotary_factor)")
        }
        guard ropeDim > 0, ropeDim % 2 == 0, ropeDim <= headDim else {
            throw ConfigError(key: "qk_rope_head_dim", message: "rope dims \(ropeDim) must be even and at most head_dim \(headDim)")
        }

        // Attention schedule and compression ratios (spec §1.2).
        var mtpLayers = try int("num_nextn_predict_layers", 0)
        guard mtpLayers >= 0 else { throw ConfigError(key: "num_nextn_predict_layers", message: "must not be negative") }
        let layerTypes = try kindList("layer_types", of: AttentionKind.self, layers: layers, what: "layer type")
        let ratioList = try intList("compress_ratios")
        if let ratioList {
            guard ratioList.count == layers || ratioList.count == layers + 1 else {
                throw ConfigError(key: "compress_ratios", message: "has \(ratioList.count) entries; expected \(layers) or \(layers + 1) (the last for the MTP block)")
            }
            if ratioList.count == layers + 1 { mtpLayers = max(mtpLayers, 1) }
        }
        var csaRatio: Int?
        var hcaRatio: Int?
        if let rates = try dict("compress_rates") {
            for (k, v) in rates {
                guard let kind = AttentionKind(rawValue: k), kind != .sliding else {
                    throw ConfigError(key: "compress_rates.\(k)", message: "unknown layer type (expected compressed_sparse_attention or heavily_compressed_attention)")
                }
                guard let n = JSONNumber.integer(v), n > 0 else {
                    throw ConfigError(key: "compress_rates.\(k)", message: "expected a positive integer, got \(v)")
                }
                if kind == .csa { csaRatio = n } else { hcaRatio = n }
            }
        }
        // transformers folds the legacy scalars over compress_rates.
        if has("compress_rate_csa") { csaRatio = try positive("compress_rate_csa") }
        if has("compress_rate_hca") { hcaRatio = try positive("compress_rate_hca") }
        if let ratioList {
            // The release ships no rates: CSA is 4 (the overlapping compressor, as transformers
            // folds it) and HCA the other nonzero value (128 in the releases).
            if csaRatio == nil { csaRatio = 4 }
            if hcaRatio == nil {
                let others = Set(ratioList.filter { $0 != 0 && $0 != csaRatio })
                if others.count > 1 {
                    throw ConfigError(key: "compress_ratios", message: "more than one HCA ratio: \(others.sorted())")
                }
                hcaRatio = others.first
            }
        }
        let kinds: [AttentionKind]
        if let layerTypes {
            kinds = layerTypes
        } else if let ratioList {
            kinds = try ratioList.prefix(layers).enumerated().map { (i, r) -> AttentionKind in
                if r == 0 { return .sliding }
                if r == csaRatio { return .csa }
                if r == hcaRatio { return .hca }
                throw ConfigError(
                    key: "compress_ratios[\(i)]",
                    message: "ratio \(r) is neither 0, the CSA ratio \(csaRatio ?? 4) nor the HCA ratio \(hcaRatio.map(String.init) ?? "(none)")")
            }
        } else {
            throw ConfigError(key: "layer_types", message: "the layer schedule is missing: give layer_types or compress_ratios")
        }
        for (kind, ratio, name) in [(AttentionKind.csa, csaRatio, "compressed_sparse_attention"), (AttentionKind.hca, hcaRatio, "heavily_compressed_attention")]
        where ratio == nil && kinds.contains(kind) {
            throw ConfigError(key: "compress_rates", message: "required key is missing: no compression ratio for the \(name) layers (give compress_rates.\(name))")
        }
        // Unused ratios keep transformers' defaults (they size nothing).
        let csa = csaRatio ?? 4
        let hca = hcaRatio ?? 128
        guard csa != hca else {
            throw ConfigError(key: "compress_rates", message: "CSA and HCA ratios must be distinct, both are \(csa)")
        }
        if let layerTypes, let ratioList {
            // Both spellings of the schedule: they must describe the same layers.
            for (i, (kind, r)) in zip(layerTypes, ratioList).enumerated() {
                let want = kind == .sliding ? 0 : (kind == .csa ? csa : hca)
                guard r == want else {
                    throw ConfigError(key: "compress_ratios[\(i)]", message: "is \(r) but layer_types[\(i)] is '\(kind.rawValue)' (ratio \(want))")
                }
            }
        }

        // MoE schedule: mlp_layer_types and/or num_hash_layers (hash layers first).
        var hashLayers: Int?
        if has("num_hash_layers") {
            let n = try int("num_hash_layers")
            guard n >= 0, n <= layers else {
                throw ConfigError(key: "num_hash_layers", message: "must be between 0 and the \(layers) layers, got \(n)")
            }
            hashLayers = n
        }
        let routing: [RoutingKind]
        if let listed = try kindList("mlp_layer_types", of: RoutingKind.self, layers: layers, what: "MLP type") {
            if let hashLayers {
                let derived = (0..<layers).map { $0 < hashLayers ? RoutingKind.hash : .score }
                if let i = (0..<layers).first(where: { listed[$0] != derived[$0] }) {
                    throw ConfigError(key: "num_hash_layers", message: "\(hashLayers) hash layers disagree with mlp_layer_types[\(i)] '\(listed[i].rawValue)'")
                }
            }
            routing = listed
        } else if let hashLayers {
            routing = (0..<layers).map { $0 < hashLayers ? .hash : .score }
        } else {
            throw ConfigError(key: "mlp_layer_types", message: "the MoE schedule is missing: give mlp_layer_types or num_hash_layers")
        }

        // RoPE families: plain main RoPE for sliding layers, compress RoPE (YaRN) for the rest.
        // transformers' nested rope_parameters {main, compress}, a flat rope_parameters, or the
        // release's flat rope_scaling (both flat forms describe the compress family only).
        let rp = try dict("rope_parameters")
        let rs = try dict("rope_scaling")
        var nestedMain: [String: Any]?
        var nestedCompress: [String: Any]?
        if let rp, rp["main"] != nil || rp["compress"] != nil {
            guard let m = rp["main"] as? [String: Any] else {
                throw ConfigError(key: "rope_parameters.main", message: "expected a JSON object next to rope_parameters.compress")
            }
            guard let c = rp["compress"] as? [String: Any] else {
                throw ConfigError(key: "rope_parameters.compress", message: "expected a JSON object next to rope_parameters.main")
            }
            nestedMain = m
            nestedCompress = c
        }
        let mainTheta = try theta(top: "rope_theta", nested: nestedMain, nestedKey: "rope_parameters.main")
        let compressTheta = try theta(top: "compress_rope_theta", nested: nestedCompress, nestedKey: "rope_parameters.compress")
        var main = RopeParameters(theta: mainTheta, type: "default")
        var compress: RopeParameters
        if let nestedMain, let nestedCompress {
            main = try rope(nestedMain, key: "rope_parameters.main", theta: mainTheta)
            compress = try rope(nestedCompress, key: "rope_parameters.compress", theta: compressTheta)
        } else if let rp {
            compress = try rope(rp, key: "rope_parameters", theta: compressTheta)
        } else if let rs {
            compress = try rope(rs, key: "rope_scaling", theta: compressTheta)
        } else {
            throw ConfigError(
                key: "rope_scaling",
                message: "required key is missing: the compressed layers' RoPE (YaRN in V4); give rope_scaling or rope_parameters ({\"type\": \"default\"} for plain RoPE)")
        }
        if let rs, rp != nil {
            let other = try rope(rs, key: "rope_scaling", theta: compressTheta)
            guard other == compress else {
                throw ConfigError(key: "rope_scaling", message: "disagrees with rope_parameters on the compress RoPE")
            }
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
            csaRatio: csa,
            hcaRatio: hca,
            indexHeadCount: try positive("index_n_heads"),
            indexHeadDim: try positive("index_head_dim"),
            indexTopK: try positive("index_topk"),
            routedExpertCount: try positive(has("n_routed_experts") ? "n_routed_experts" : "num_local_experts"),
            sharedExpertCount: try int("n_shared_experts"),
            expertsPerToken: try positive("num_experts_per_tok"),
            moeIntermediateSize: try positive(has("moe_intermediate_size") ? "moe_intermediate_size" : "intermediate_size"),
            routedScalingFactor: Float(try double("routed_scaling_factor")),
            swigluLimit: Float(try double("swiglu_limit")),
            hcMult: try positive("hc_mult"),
            hcSinkhornIterations: try positive("hc_sinkhorn_iters"),
            hcEps: Float(try double("hc_eps")),
            rmsNormEps: Float(try double("rms_norm_eps")),
            maxPositionEmbeddings: try positive("max_position_embeddings"),
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
