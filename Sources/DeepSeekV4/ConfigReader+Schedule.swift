// ConfigReader+Schedule.swift: the parts of config.json given in two spellings: the attention
// schedule with its compression ratios, and the two RoPE families. Where both spellings are
// given they must agree (see the NOTE on `ConfigReader`).

extension ConfigReader {
    /// The attention schedule, its two compression ratios and the MTP layers, from
    /// `layer_types` + `compress_rates` (transformers) and/or `compress_ratios` (released).
    func attentionSchedule(layers: Int) throws -> (kinds: [AttentionKind], csa: Int, hca: Int, mtpLayers: Int) {
        var mtpLayers = file.numNextnPredictLayers ?? 0
        guard mtpLayers >= 0 else { throw ConfigError(key: "num_nextn_predict_layers", message: "must not be negative") }
        let layerTypes: [AttentionKind]? = try kindList(file.layerTypes, .layerTypes, layers: layers, what: "layer type")
        let ratioList = file.compressRatios
        if let ratioList {
            guard ratioList.count == layers || ratioList.count == layers + 1 else {
                throw ConfigError(key: "compress_ratios", message: "has \(ratioList.count) entries; expected \(layers) or \(layers + 1) (the last for the MTP block)")
            }
            if ratioList.count == layers + 1 { mtpLayers = max(mtpLayers, 1) }
        }
        let (csaRatio, hcaRatio) = try ratios(ratioList)
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
        return (kinds, csa, hca, mtpLayers)
    }

    /// The CSA and HCA ratios: `compress_rates`, the legacy scalars folded over it (as
    /// transformers does), or, for the release (which ships no rates), 4 for CSA and the other
    /// nonzero value of `compress_ratios` for HCA.
    func ratios(_ ratioList: [Int]?) throws -> (csa: Int?, hca: Int?) {
        var csaRatio: Int?
        var hcaRatio: Int?
        for (k, n) in file.compressRates ?? [:] {
            guard let kind = AttentionKind(rawValue: k), kind != .sliding else {
                throw ConfigError(key: "compress_rates.\(k)", message: "unknown layer type (expected compressed_sparse_attention or heavily_compressed_attention)")
            }
            guard n > 0 else { throw ConfigError(key: "compress_rates.\(k)", message: "expected a positive integer, got \(n)") }
            if kind == .csa { csaRatio = n } else { hcaRatio = n }
        }
        if let n = file.compressRateCSA { csaRatio = try positive(n, .compressRateCSA) }
        if let n = file.compressRateHCA { hcaRatio = try positive(n, .compressRateHCA) }
        if let ratioList {
            if csaRatio == nil { csaRatio = 4 }
            if hcaRatio == nil {
                let others = Set(ratioList.filter { $0 != 0 && $0 != csaRatio })
                if others.count > 1 {
                    throw ConfigError(key: "compress_ratios", message: "more than one HCA ratio: \(others.sorted())")
                }
                hcaRatio = others.first
            }
        }
        return (csaRatio, hcaRatio)
    }

    /// RoPE families: plain main RoPE for sliding layers, compress RoPE (YaRN) for the rest.
    /// transformers' nested rope_parameters {main, compress}, a flat rope_parameters, or the
    /// release's flat rope_scaling (both flat forms describe the compress family only).
    func ropeFamilies() throws -> (main: RopeParameters, compress: RopeParameters) {
        let rp = file.ropeParameters
        var nestedMain: RopeFields?
        var nestedCompress: RopeFields?
        if let rp, rp.isNested {
            guard let m = rp.main else {
                throw ConfigError(key: "rope_parameters.main", message: "expected a JSON object next to rope_parameters.compress")
            }
            guard let c = rp.compress else {
                throw ConfigError(key: "rope_parameters.compress", message: "expected a JSON object next to rope_parameters.main")
            }
            nestedMain = m
            nestedCompress = c
        }
        let mainTheta = try theta(top: file.ropeTheta, .ropeTheta, nested: nestedMain, nestedKey: "rope_parameters.main")
        let compressTheta = try theta(top: file.compressRopeTheta, .compressRopeTheta, nested: nestedCompress, nestedKey: "rope_parameters.compress")
        var main = RopeParameters(theta: mainTheta, type: "default")
        let compress: RopeParameters
        if let nestedMain, let nestedCompress {
            main = try rope(nestedMain, key: "rope_parameters.main", theta: mainTheta)
            compress = try rope(nestedCompress, key: "rope_parameters.compress", theta: compressTheta)
        } else if let rp {
            compress = try rope(rp.flat, key: "rope_parameters", theta: compressTheta)
        } else if let rs = file.ropeScaling {
            compress = try rope(rs, key: "rope_scaling", theta: compressTheta)
        } else {
            throw ConfigError(
                key: "rope_scaling",
                message: "required key is missing: the compressed layers' RoPE (YaRN in V4); give rope_scaling or rope_parameters ({\"type\": \"default\"} for plain RoPE)")
        }
        if let rs = file.ropeScaling, rp != nil {
            guard try rope(rs, key: "rope_scaling", theta: compressTheta) == compress else {
                throw ConfigError(key: "rope_scaling", message: "disagrees with rope_parameters on the compress RoPE")
            }
        }
        guard main.type == "default" else {
            throw ConfigError(key: "rope_parameters.main", message: "sliding layers use plain RoPE, got '\(main.type)'")
        }
        return (main, compress)
    }

    /// One RoPE family; `key` locates it in errors.
    func rope(_ f: RopeFields, key: String, theta: Double) throws -> RopeParameters {
        let type = f.ropeType ?? f.type ?? "default"
        var p = RopeParameters(theta: theta, type: type)
        switch type {
        case "default":
            break
        case "yarn":
            guard let factor = f.factor else { throw ConfigError(key: "\(key).factor", message: "yarn needs a factor") }
            guard let orig = f.originalMaxPositionEmbeddings else {
                throw ConfigError(key: "\(key).original_max_position_embeddings", message: "yarn needs it")
            }
            p.factor = factor
            p.originalMaxPositionEmbeddings = Int(orig)
            p.betaFast = f.betaFast.flatMap { $0 == 0 ? nil : $0 } ?? 32
            p.betaSlow = f.betaSlow.flatMap { $0 == 0 ? nil : $0 } ?? 1
            // V4 never scales cos/sin (DeepseekV4RotaryEmbedding): transformers forces attention_factor = 1.
            p.attentionFactor = f.attentionFactor ?? 1
            if let t = f.truncate { p.truncate = t }
        default:
            throw ConfigError(key: "\(key).rope_type", message: "unsupported RoPE type '\(type)' (expected default or yarn)")
        }
        return p
    }

    /// A RoPE base given at the top level and/or inside a nested family: at least one is
    /// required, and both must agree.
    func theta(top: Double?, _ topKey: ConfigFile.CodingKeys, nested: RopeFields?, nestedKey: String) throws -> Double {
        switch (top, nested?.ropeTheta) {
        case (let t?, let i?):
            guard t == i else {
                throw ConfigError(key: "\(nestedKey).rope_theta", message: "is \(i) but \(topKey.rawValue) is \(t)")
            }
            return i
        case (nil, let i?): return i
        case (let t?, nil): return t
        case (nil, nil): throw ConfigError(key: topKey.rawValue, message: "required key is missing")
        }
    }
}
