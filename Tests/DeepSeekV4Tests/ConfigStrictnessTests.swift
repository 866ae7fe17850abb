// ConfigStrictnessTests.swift: keys that change the math are required, and the two spellings
// of the schedule, the rope dims and the RoPE bases must agree when both are given.
import DeepSeekV4
import Foundation
import Testing

@Suite struct ConfigStrictnessTests {
    /// Every config key that changes the logits is required in some spelling; without it the
    /// error names the key (or the spelling to give). Before, these silently took defaults.
    @Test(arguments: [
        ("tiny-released", "hc_mult", "hc_mult"),
        ("tiny-released", "hc_sinkhorn_iters", "hc_sinkhorn_iters"),
        ("tiny-released", "hc_eps", "hc_eps"),
        ("tiny-released", "swiglu_limit", "swiglu_limit"),
        ("tiny-released", "routed_scaling_factor", "routed_scaling_factor"),
        ("tiny-released", "rope_theta", "rope_theta"),
        ("tiny-released", "compress_rope_theta", "compress_rope_theta"),
        ("tiny-released", "rms_norm_eps", "rms_norm_eps"),
        ("tiny-released", "max_position_embeddings", "max_position_embeddings"),
        ("tiny-released", "n_shared_experts", "n_shared_experts"),
        ("tiny-released", "num_hash_layers", "mlp_layer_types"),
        ("tiny-released", "rope_scaling", "rope_scaling"),
        ("tiny-released", "qk_rope_head_dim", "qk_rope_head_dim"),
        ("tiny-released", "compress_ratios", "layer_types"),
        ("tiny-hf", "mlp_layer_types", "mlp_layer_types"),
        ("tiny-hf", "compress_rates", "compress_rates"),
        ("tiny-hf", "rope_parameters", "rope_scaling"),
        ("tiny-hf", "hc_sinkhorn_iters", "hc_sinkhorn_iters"),
    ])
    func mathKeysAreRequired(fixture name: String, removed: String, key: String) throws {
        let e = try #require(try configError({ $0.removeValue(forKey: removed) }, fixture: name), "\(removed) should be required")
        #expect(e.key == key)
        #expect(e.description.contains("missing"), "\(e)")
    }

    /// Rope dims come from qk_rope_head_dim or partial_rotary_factor; transformers writes both.
    @Test func ropeDimsInEitherSpellingMustAgree() throws {
        let e = try #require(try configError({ $0.removeValue(forKey: "qk_rope_head_dim"); $0.removeValue(forKey: "partial_rotary_factor") }, fixture: "tiny-hf"))
        #expect(e.key == "qk_rope_head_dim")
        var hf = try configJSON(fixture("tiny-hf"))
        hf.removeValue(forKey: "qk_rope_head_dim")
        #expect(try decode(hf).ropeDim == 16)  // 64 · 0.25
        #expect(try configError({ $0["partial_rotary_factor"] = 0.5 }, fixture: "tiny-hf")?.key == "partial_rotary_factor")
    }

    /// A RoPE base may sit at the top level or in the nested family, but not disagree.
    @Test func ropeThetasInEitherPlaceMustAgree() throws {
        var hf = try configJSON(fixture("tiny-hf"))
        hf.removeValue(forKey: "rope_theta")
        hf.removeValue(forKey: "compress_rope_theta")
        let c = try decode(hf)
        #expect(c.mainRope.theta == 10000 && c.compressRope.theta == 160000)
        #expect(try configError({ $0["rope_theta"] = 5000.0 }, fixture: "tiny-hf")?.key == "rope_parameters.main.rope_theta")
        #expect(try configError({ $0["compress_rope_theta"] = 40000.0 }, fixture: "tiny-hf")?.key == "rope_parameters.compress.rope_theta")
    }

    /// A rope_scaling that is not an object used to disable YaRN without a word.
    @Test func ropeScalingMustBeAnObject() throws {
        #expect(try configError { $0["rope_scaling"] = "yarn" }?.key == "rope_scaling")
        #expect(try configError { $0["rope_scaling"] = [16, 65536] }?.key == "rope_scaling")
        #expect(try configError { $0["rope_scaling"] = NSNull() }?.description.contains("missing") == true)
        #expect(try configError({ $0["rope_parameters"] = "yarn" }, fixture: "tiny-hf")?.key == "rope_parameters")
        let e = try configError({ obj in
            var rp = obj["rope_parameters"] as! [String: Any]
            rp.removeValue(forKey: "compress")
            obj["rope_parameters"] = rp
        }, fixture: "tiny-hf")
        #expect(e?.key == "rope_parameters.compress")
        // Plain RoPE must be asked for explicitly.
        var rel = try configJSON(fixture("tiny-released"))
        rel["rope_scaling"] = ["type": "default"]
        #expect(try decode(rel).compressRope.type == "default")
    }

    /// rope_scaling next to rope_parameters must describe the same compress RoPE.
    @Test func ropeScalingAndRopeParametersMustAgree() throws {
        var hf = try configJSON(fixture("tiny-hf"))
        hf["rope_scaling"] = ["type": "yarn", "factor": 16, "original_max_position_embeddings": 64, "beta_fast": 32, "beta_slow": 1]
        #expect(try decode(hf).compressRope.factor == 16)
        hf["rope_scaling"] = ["type": "yarn", "factor": 8, "original_max_position_embeddings": 64]
        #expect(throws: ConfigError(key: "rope_scaling", message: "disagrees with rope_parameters on the compress RoPE")) { try decode(hf) }
    }

    /// layer_types next to compress_ratios (transformers reads only the first) must agree.
    @Test func attentionSchedulesInBothSpellingsMustAgree() throws {
        var rel = try configJSON(fixture("tiny-released"))
        rel["layer_types"] = ["heavily_compressed_attention", "compressed_sparse_attention", "sliding_attention",
                              "compressed_sparse_attention", "heavily_compressed_attention", "compressed_sparse_attention"]
        #expect(try decode(rel).attentionKinds == [.hca, .csa, .sliding, .csa, .hca, .csa])
        var types = rel["layer_types"] as! [String]
        types[2] = "compressed_sparse_attention"
        rel["layer_types"] = types
        let e = try #require(try configErrorOf(rel))
        #expect(e.key == "compress_ratios[2]" && e.message.contains("layer_types[2]"), "\(e)")

        var hf = try configJSON(fixture("tiny-hf"))
        hf["compress_ratios"] = [0, 4, 8, 4, 8, 0, 0]
        #expect(try decode(hf).attentionKinds == [.sliding, .csa, .hca, .csa, .hca, .sliding])
        hf["compress_ratios"] = [0, 8, 8, 4, 8, 0]
        #expect(try configErrorOf(hf)?.key == "compress_ratios[1]")
        hf["compress_ratios"] = [0, 4, 128, 4, 128, 0]  // the release's 128 against compress_rates' 8
        #expect(try configErrorOf(hf)?.key == "compress_ratios[2]")
    }

    /// mlp_layer_types next to num_hash_layers must agree; num_hash_layers fits the layers.
    @Test func moeSchedulesInBothSpellingsMustAgree() throws {
        var hf = try configJSON(fixture("tiny-hf"))
        hf["num_hash_layers"] = 2
        #expect(try decode(hf).routingKinds == [.hash, .hash, .score, .score, .score, .score])
        hf["num_hash_layers"] = 3
        let e = try #require(try configErrorOf(hf))
        #expect(e.key == "num_hash_layers" && e.message.contains("mlp_layer_types[2]"), "\(e)")

        for bad in [7, -1] {
            #expect(try configError { $0["num_hash_layers"] = bad }?.key == "num_hash_layers", "num_hash_layers \(bad)")
        }
        var rel = try configJSON(fixture("tiny-released"))
        rel["num_hash_layers"] = 6
        #expect(try decode(rel).routingKinds == Array(repeating: .hash, count: 6))
        rel["num_hash_layers"] = 0
        #expect(try decode(rel).routingKinds == Array(repeating: .score, count: 6))
    }

    /// Regression: the reader probed `[String: Any]` and skipped keys of an unexpected type
    /// (`eos_token_id: "1"` gave no EOS, `tie_word_embeddings: "true"` and `hidden_act: 1`
    /// were not checked). The Codable decoder types every key it reads and names the one at
    /// fault, nested and indexed, with the value found.
    @Test func everyKeyReadIsTyped() throws {
        #expect(try configError { $0["eos_token_id"] = "1" }?.key == "eos_token_id")
        #expect(try configError { $0["tie_word_embeddings"] = "true" }?.key == "tie_word_embeddings")
        #expect(try configError { $0["hidden_act"] = 1 }?.key == "hidden_act")
        #expect(try configError { $0["model_type"] = 4 }?.key == "model_type")
        let e = try #require(try configError { $0["compress_ratios"] = [0, 4, "8", 4, 8, 4, 0] })
        #expect(e.key == "compress_ratios[2]" && e.message == "expected an integer, got 8", "\(e)")
        let nested = try configError({ obj in
            var rp = obj["rope_parameters"] as! [String: Any]
            var c = rp["compress"] as! [String: Any]
            c["factor"] = "16"
            rp["compress"] = c
            obj["rope_parameters"] = rp
        }, fixture: "tiny-hf")
        #expect(nested?.key == "rope_parameters.compress.factor" && nested?.message == "expected a number, got 16", "\(String(describing: nested))")
        #expect(try configError { $0["eos_token_id"] = [1, 2] } == nil)
    }

    /// compress_rates is an object of positive integers keyed by compressed layer type.
    @Test func compressRatesAreChecked() throws {
        #expect(try configError({ $0["compress_rates"] = 4 }, fixture: "tiny-hf")?.key == "compress_rates")
        #expect(try configError({ $0["compress_rates"] = ["compressed_sparse_attention": 4, "heavily_compressed_attention": "8"] }, fixture: "tiny-hf")?.key
            == "compress_rates.heavily_compressed_attention")
        #expect(try configError({ $0["compress_rates"] = ["compressed_sparse_attention": 4, "heavily_compressed_attention": 8, "sliding_attention": 1] }, fixture: "tiny-hf")?.key
            == "compress_rates.sliding_attention")
        #expect(try configError({ $0["compress_rates"] = ["compressed_sparse_attention": 4, "heavily_compressed_attention": 4] }, fixture: "tiny-hf")?.key
            == "compress_rates")
        // Only the ratio the schedule needs is required.
        let e = try configError({ $0["compress_rates"] = ["compressed_sparse_attention": 4] }, fixture: "tiny-hf")
        #expect(e?.key == "compress_rates" && e?.message.contains("heavily_compressed_attention") == true)
    }

    /// The Flash config.json as released decodes to the released model's layer schedule.
    @Test func releasedFlashConfigDecodes() throws {
        let c = try DeepSeekV4Config.decode(json: Data(Self.flashConfig.utf8))
        #expect(c.layerCount == 43 && c.mtpLayerCount == 1 && c.ropeDim == 64)
        #expect(c.attentionKinds.prefix(2) == [.sliding, .sliding])
        #expect(c.attentionKinds.filter { $0 == .csa }.count == 21 && c.attentionKinds.filter { $0 == .hca }.count == 20)
        #expect(c.csaRatio == 4 && c.hcaRatio == 128)
        #expect(c.routingKinds.prefix(4) == [.hash, .hash, .hash, .score])
        #expect(c.routedScalingFactor == 1.5 && c.swigluLimit == 10 && c.hcSinkhornIterations == 20)
        let r = c.compressRope
        #expect(r.theta == 160000 && r.type == "yarn" && r.factor == 16 && r.originalMaxPositionEmbeddings == 65536)
        #expect(r.betaFast == 32 && r.betaSlow == 1 && r.attentionFactor == 1)
        #expect(c.mainRope.theta == 10000 && c.mainRope.type == "default")
    }

    /// DeepSeek-V4-Flash's config.json, as released.
    static let flashConfig = """
        {"architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4", "vocab_size": 129280,
         "hidden_size": 4096, "num_hidden_layers": 43, "num_attention_heads": 64, "num_key_value_heads": 1,
         "head_dim": 512, "qk_rope_head_dim": 64, "q_lora_rank": 1024, "o_groups": 8, "o_lora_rank": 1024,
         "sliding_window": 128,
         "compress_ratios": [0, 0, \(Array(repeating: "4, 128", count: 20).joined(separator: ", ")), 4, 0],
         "compress_rope_theta": 160000, "rope_theta": 10000,
         "rope_scaling": {"type": "yarn", "factor": 16, "original_max_position_embeddings": 65536, "beta_fast": 32, "beta_slow": 1},
         "max_position_embeddings": 1048576, "index_n_heads": 64, "index_head_dim": 128, "index_topk": 512,
         "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 6, "moe_intermediate_size": 2048,
         "scoring_func": "sqrtsoftplus", "topk_method": "noaux_tc", "norm_topk_prob": true, "routed_scaling_factor": 1.5,
         "swiglu_limit": 10.0, "num_hash_layers": 3, "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6,
         "rms_norm_eps": 1e-6, "num_nextn_predict_layers": 1, "hidden_act": "silu", "tie_word_embeddings": false,
         "bos_token_id": 0, "eos_token_id": 1, "expert_dtype": "fp4",
         "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "scale_fmt": "ue8m0", "weight_block_size": [128, 128], "activation_scheme": "dynamic"}}
        """

    func decode(_ obj: [String: Any]) throws -> DeepSeekV4Config {
        try DeepSeekV4Config.decode(json: try JSONSerialization.data(withJSONObject: obj))
    }

    func configErrorOf(_ obj: [String: Any]) throws -> ConfigError? {
        do {
            _ = try decode(obj)
            return nil
        } catch let e as ConfigError {
            return e
        }
    }
}
