// FixtureTests.swift: dsv4 against transformers' DeepseekV4ForCausalLM on tiny random models
// (built by tools/make_fixture.py), over 640 tokens, in every feeding mode and both name
// spellings.
import Checkpoint
import DeepSeekV4
import Foundation
import Testing

/// Tests/Fixtures.
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

func fixture(_ name: String) -> String { (fixturesDirectory as NSString).appendingPathComponent(name) }

func readIds(_ dir: String) throws -> [Int] {
    let data = try Data(contentsOf: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("input_ids.json")))
    return try JSONDecoder().decode([Int].self, from: data)
}

func readReference(_ dir: String) throws -> (logits: [Float], rows: Int, cols: Int) {
    let f = try SafetensorsFile(path: (dir as NSString).appendingPathComponent("reference.safetensors"))
    let info = try #require(f.info("logits"))
    let view = TensorView(info: info, file: f)
    return (try view.floats(), info.shape[0], info.shape[1])
}

/// Runs `ids` through `model` in chunks of `chunk` tokens (nil = one pass).
func run(_ model: DeepSeekV4Model, _ ids: [Int], chunk: Int?) throws -> [Float] {
    let state = model.makeState()
    var out: [Float] = []
    let size = chunk ?? ids.count
    for start in stride(from: 0, to: ids.count, by: size) {
        out += try model.forward(tokens: Array(ids[start..<min(start + size, ids.count)]), state: state)
    }
    return out
}

@Suite struct FixtureTests {
    static let cases: [(String, Int?)] = [
        ("tiny-hf", nil), ("tiny-hf", 1), ("tiny-hf", 13), ("tiny-hf", 64),
        ("tiny-released", nil), ("tiny-released", 1), ("tiny-released", 13), ("tiny-released", 100),
        // FP8 + FP4 in the release's layout (tools/make_released_fixture.py), reference on the dequantized weights.
        ("tiny-fp8", nil), ("tiny-fp8", 1), ("tiny-fp8", 13),
        // The release's HCA ratio 128 and window 128 over 768 tokens (6 HCA entries per layer);
        // chunks of 100 end inside and across compression windows.
        ("tiny-hca128", nil), ("tiny-hca128", 1), ("tiny-hca128", 100),
        // transformers' own module names as save_pretrained(save_original_format=False) writes
        // them: fused experts, self_attn.*, attn_hc.*, lm_head (the loader's alternate names).
        ("tiny-native", nil), ("tiny-native", 1), ("tiny-native", 13),
        // 4,096 tokens: the indexer keeps 8 of up to 1,024 CSA entries (selecting for 4,061
        // queries), 32 HCA entries of ratio 128, window 128; chunks of 500 cross both.
        ("tiny-long", nil), ("tiny-long", 1), ("tiny-long", 500),
    ]

    /// max |Δlogit| allowed against transformers. Measured: 4.9e-6 to 5.6e-6 over these
    /// fixtures and modes (scalar kernels), 3.8e-6 to 6.3e-6 on unseen fixtures (AVX-512,
    /// bench/RESULTS.md); about 2.5× the worst of those.
    static let tolerance: Float = 1.5e-5

    @Test(arguments: cases)
    func logitsMatchTransformers(name: String, chunk: Int?) throws {
        let dir = fixture(name)
        let model = try DeepSeekV4Model(directory: dir)
        let ids = try readIds(dir)
        #expect(ids.count >= (name == "tiny-fp8" ? 300 : 600))
        let ref = try readReference(dir)
        #expect(ref.rows == ids.count && ref.cols == model.config.vocabSize)
        let ours = try run(model, ids, chunk: chunk)
        var worst: Float = 0
        for i in 0..<ours.count { worst = max(worst, abs(ours[i] - ref.logits[i])) }
        #expect(worst <= Self.tolerance, "max |Δlogit| = \(worst)")
    }

    /// Both spellings, every layer kind, both routing kinds, YaRN active: the schedule is read.
    @Test func fixturesCoverTheArchitecture() throws {
        let hf = try DeepSeekV4Config.load(directory: fixture("tiny-hf"))
        let rel = try DeepSeekV4Config.load(directory: fixture("tiny-released"))
        for c in [hf, rel] {
            #expect(Set(c.attentionKinds) == [.sliding, .csa, .hca])
            #expect(Set(c.routingKinds) == [.hash, .score])
            #expect(c.compressRope.type == "yarn")
        }
        #expect(rel.attentionKinds == [.hca, .csa, .sliding, .csa, .hca, .csa])
        #expect(rel.hcaRatio == 8 && rel.mtpLayerCount == 1)
    }

    /// tiny-native was written by transformers with its native names (tools/make_fixture.py
    /// --spelling native), so loading it takes the alternate-name branches of WeightNames:
    /// the fused `mlp.experts.gate_up_proj` / `down_proj`, `self_attn.*`, `attn_hc.*`, the
    /// indexer's `compressor.indexer.*` and `scorer.weights_proj`, `lm_head`; and every
    /// tensor of the file is read.
    @Test func nativeFixtureUsesTransformersModuleNames() throws {
        let dir = fixture("tiny-native")
        let names = Set(try SafetensorsFile(path: dir + "/model.safetensors").tensors.map(\.name))
        for required in [
            "model.layers.2.mlp.experts.gate_up_proj", "model.layers.2.mlp.experts.down_proj", "lm_head.weight",
            "model.layers.1.self_attn.q_a_proj.weight", "model.layers.1.self_attn.sinks", "model.layers.0.attn_hc.fn",
            "model.layers.1.self_attn.compressor.indexer.scorer.weights_proj.weight",
            "model.layers.1.self_attn.compressor.indexer.kv_proj.weight", "model.layers.2.mlp.gate.e_score_correction_bias",
        ] {
            #expect(names.contains(required), "\(required)")
        }
        #expect(!names.contains { $0.contains(".ffn.") || $0.contains(".attn.") || $0.hasPrefix("head.") })
        let model = try DeepSeekV4Model(directory: dir)
        #expect(model.unusedTensors.isEmpty, "\(model.unusedTensors.prefix(5))")
        let c = model.config
        #expect(Set(c.attentionKinds) == [.sliding, .csa, .hca] && Set(c.routingKinds) == [.hash, .score])
    }

    /// tiny-hca128 has the real model's HCA ratio and window, and enough tokens for several
    /// HCA entries, each of which is visible to later queries.
    @Test func hca128FixtureHasSeveralHeavyEntries() throws {
        let c = try DeepSeekV4Config.load(directory: fixture("tiny-hca128"))
        #expect(c.hcaRatio == 128 && c.csaRatio == 4 && c.slidingWindow == 128)
        #expect(c.attentionKinds == [.hca, .csa, .hca, .sliding, .csa])
        #expect(try readIds(fixture("tiny-hca128")).count / c.hcaRatio >= 6)
        #expect(c.compressRope.type == "yarn" && Set(c.routingKinds) == [.hash, .score])
    }

    /// tiny-long is the long-context oracle: ≥ 4,096 tokens, HCA ratio 128, and a CSA top-k
    /// far smaller than what late queries see.
    @Test func longFixtureSelectsAndCompressesHeavily() throws {
        let c = try DeepSeekV4Config.load(directory: fixture("tiny-long"))
        let n = try readIds(fixture("tiny-long")).count
        #expect(n >= 4096 && c.hcaRatio == 128 && c.slidingWindow == 128)
        #expect(c.attentionKinds.filter { $0 == .csa }.count == 2 && c.attentionKinds.contains(.hca))
        #expect(c.indexTopK * 16 <= n / c.csaRatio)
    }

    /// One state fed by pieces equals a fresh full pass, bit for bit in the last row.
    @Test func lastOnlyEqualsFullLastRow() throws {
        let model = try DeepSeekV4Model(directory: fixture("tiny-hf"))
        let ids = Array(try readIds(fixture("tiny-hf")).prefix(50))
        let s1 = model.makeState()
        let full = try model.forward(tokens: ids, state: s1)
        let s2 = model.makeState()
        let last = try model.forward(tokens: ids, state: s2, lastOnly: true)
        let V = model.config.vocabSize
        #expect(Array(full[(49 * V)...]) == last)
        #expect(s1.position == 50 && s2.position == 50)
    }
}
