// WeightNames.swift: the one place that spells checkpoint tensor names (released names; transformers' conversion_mapping.py, "deepseek_v4").
//
// Each tensor has candidate names: DeepSeek's released spelling first, then the spellings
// transformers' `save_pretrained` writes (with the `model.` prefix, and its `.norm.` /
// `.kv_norm.` renaming quirk). The loader takes whichever is present.

/// Candidate names of every tensor the model reads.
enum WeightNames {
    static let embed = ["embed.weight", "model.embed_tokens.weight"]
    static let head = ["head.weight", "lm_head.weight"]
    static let norm = ["norm.weight", "model.norm.weight"]
    static let hcHeadFn = ["hc_head_fn", "model.hc_head.hc_fn"]
    static let hcHeadBase = ["hc_head_base", "model.hc_head.hc_base"]
    static let hcHeadScale = ["hc_head_scale", "model.hc_head.hc_scale"]

    /// Hyper-connection tensors: `part` is "fn", "base" or "scale"; `block` is "attn" or "ffn".
    static func hc(_ l: Int, _ block: String, _ part: String) -> [String] {
        ["layers.\(l).hc_\(block)_\(part)", "model.layers.\(l).\(block)_hc.\(part)"]
    }

    static func attnNorm(_ l: Int) -> [String] {
        ["layers.\(l).attn_norm.weight", "model.layers.\(l).input_layernorm.weight"]
    }
    static func ffnNorm(_ l: Int) -> [String] {
        ["layers.\(l).ffn_norm.weight", "model.layers.\(l).post_attention_layernorm.weight"]
    }

    /// Main attention tensors, by released short name.
    static func attn(_ l: Int, _ released: String) -> [String] {
        let hf: [String: [String]] = [
            "wq_a.weight": ["q_a_proj.weight"], "q_norm.weight": ["q_a_norm.weight"],
            "wq_b.weight": ["q_b_proj.weight"], "wkv.weight": ["kv_proj.weight"],
            "kv_norm.weight": ["kv_norm.weight", "norm.weight"], "wo_a.weight": ["o_a_proj.weight"],
            "wo_b.weight": ["o_b_proj.weight"], "attn_sink": ["sinks"],
        ]
        // transformers 5.24 saves kv_norm as `attn.norm` (its `.norm.` ↔ `.kv_norm.` quirk).
        let quirk = released == "kv_norm.weight" ? ["layers.\(l).attn.norm.weight"] : []
        return ["layers.\(l).attn.\(released)"] + quirk
            + (hf[released] ?? []).flatMap { ["model.layers.\(l).self_attn.\($0)", "model.layers.\(l).attn.\($0)"] }
    }

    /// Compressor tensors; `indexer` selects the indexer's own compressor.
    static func compressor(_ l: Int, indexer: Bool, _ released: String) -> [String] {
        let hf: [String: [String]] = [
            "wkv.weight": ["kv_proj.weight"], "wgate.weight": ["gate_proj.weight"],
            "ape": ["position_bias"], "norm.weight": ["kv_norm.weight", "norm.weight"],
        ]
        let releasedPrefix = indexer ? "layers.\(l).attn.indexer.compressor" : "layers.\(l).attn.compressor"
        let hfPrefix = indexer ? "model.layers.\(l).self_attn.compressor.indexer" : "model.layers.\(l).self_attn.compressor"
        return ["\(releasedPrefix).\(released)"] + (hf[released] ?? []).map { "\(hfPrefix).\($0)" }
    }

    static func indexerQB(_ l: Int) -> [String] {
        ["layers.\(l).attn.indexer.wq_b.weight", "model.layers.\(l).self_attn.compressor.indexer.q_b_proj.weight"]
    }
    static func indexerWeightsProj(_ l: Int) -> [String] {
        [
            "layers.\(l).attn.indexer.weights_proj.weight",
            "model.layers.\(l).self_attn.compressor.indexer.scorer.weights_proj.weight",
            "model.layers.\(l).self_attn.compressor.indexer.weights_proj.weight",
        ]
    }

    static func gate(_ l: Int) -> [String] { ["layers.\(l).ffn.gate.weight", "model.layers.\(l).mlp.gate.weight"] }
    static func gateBias(_ l: Int) -> [String] {
        ["layers.\(l).ffn.gate.bias", "model.layers.\(l).mlp.gate.e_score_correction_bias"]
    }
    static func tid2eid(_ l: Int) -> [String] { ["layers.\(l).ffn.gate.tid2eid", "model.layers.\(l).mlp.gate.tid2eid"] }

    /// Released per-expert matrices: `w` is "w1", "w2" or "w3".
    static func expert(_ l: Int, _ e: Int, _ w: String) -> String { "layers.\(l).ffn.experts.\(e).\(w).weight" }
    /// transformers' fused expert tensors: [E, 2I, D] and [E, D, I].
    static func fusedGateUp(_ l: Int) -> String { "model.layers.\(l).mlp.experts.gate_up_proj" }
    static func fusedDown(_ l: Int) -> String { "model.layers.\(l).mlp.experts.down_proj" }

    /// Shared expert: `w` is "w1", "w2" or "w3".
    static func shared(_ l: Int, _ w: String) -> [String] {
        let hf = ["w1": "gate_proj", "w2": "down_proj", "w3": "up_proj"][w]!
        return ["layers.\(l).ffn.shared_experts.\(w).weight", "model.layers.\(l).mlp.shared_experts.\(hf).weight"]
    }

    /// Prefixes of the multi-token-prediction block's tensors (released and transformers'
    /// spellings): recognised, not used by the main model.
    static let mtpPrefixes = ["mtp.", "model.mtp."]

    /// Whether `name` belongs to the MTP block.
    static func isMTP(_ name: String) -> Bool { mtpPrefixes.contains { name.hasPrefix($0) } }
}
