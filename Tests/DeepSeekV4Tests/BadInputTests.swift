// BadInputTests.swift: bad configs, checkpoints and token ids give located errors.
import Checkpoint
import DeepSeekV4
import Foundation
import Testing

/// A scratch copy of a fixture folder whose files a test may break.
func scratchCopy(of name: String) throws -> String {
    let dst = NSTemporaryDirectory() + "dsv4-test-\(UUID().uuidString)"
    try FileManager.default.copyItem(atPath: fixture(name), toPath: dst)
    return dst
}

func configJSON(_ dir: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))
    return try JSONSerialization.jsonObject(with: data) as! [String: Any]
}

func configError(_ mutate: (inout [String: Any]) -> Void, fixture name: String = "tiny-released") throws -> ConfigError? {
    var obj = try configJSON(fixture(name))
    mutate(&obj)
    let data = try JSONSerialization.data(withJSONObject: obj)
    do {
        _ = try DeepSeekV4Config.decode(json: data)
        return nil
    } catch let e as ConfigError {
        return e
    }
}

@Suite struct ConfigTests {
    @Test(arguments: ["hidden_size", "num_hidden_layers", "head_dim", "vocab_size", "q_lora_rank", "index_topk"])
    func missingRequiredKeyIsNamed(key: String) throws {
        let e = try #require(try configError { $0.removeValue(forKey: key) })
        #expect(e.key == key)
        #expect(e.description.contains("missing"))
    }

    @Test func scheduleOfWrongLengthIsRejected() throws {
        let e = try #require(try configError { $0["compress_ratios"] = [0, 4, 8] })
        #expect(e.key == "compress_ratios")
        let e2 = try #require(try configError({ $0["layer_types"] = ["sliding_attention"] }, fixture: "tiny-hf"))
        #expect(e2.key == "layer_types")
        let e3 = try #require(try configError({ $0["mlp_layer_types"] = ["hash_moe", "dense"] + Array(repeating: "moe", count: 4) }, fixture: "tiny-hf"))
        #expect(e3.key == "mlp_layer_types[1]")
    }

    @Test func inconsistentRatiosAreRejected() throws {
        let e = try #require(try configError { $0["compress_ratios"] = [8, 4, 0, 4, 16, 4, 0] })
        #expect(e.key == "compress_ratios")
        let e2 = try #require(try configError({ $0["layer_types"] = nil; $0["compress_ratios"] = [0, 4, 7, 4, 8, 4]; $0["compress_rates"] = nil; $0["compress_rate_hca"] = 8 }, fixture: "tiny-hf"))
        #expect(e2.key == "compress_ratios[2]")
    }

    @Test func wrongTypesAreRejected() throws {
        #expect(try configError { $0["hidden_size"] = "48" }?.key == "hidden_size")
        #expect(try configError { $0["hidden_size"] = true }?.key == "hidden_size")
        #expect(try configError { $0["num_attention_heads"] = 0 }?.key == "num_attention_heads")
        #expect(try configError { $0["scoring_func"] = "softmax" }?.key == "scoring_func")
        #expect(try configError { $0["rope_scaling"] = ["type": "longrope"] }?.key == "rope_scaling.rope_type")
        #expect(try configError { $0["o_groups"] = 3 }?.key == "o_groups")
    }

    @Test func bothSpellingsOfTheSchedule() throws {
        // Released: compress_ratios has L+1 entries (the last is the MTP block).
        let rel = try DeepSeekV4Config.load(directory: fixture("tiny-released"))
        #expect(rel.routingKinds == [.hash, .hash, .score, .score, .score, .score])
        #expect(rel.ropeDim == 16 && rel.compressRope.factor == 16 && rel.compressRope.originalMaxPositionEmbeddings == 64)
        let hf = try DeepSeekV4Config.load(directory: fixture("tiny-hf"))
        #expect(hf.attentionKinds == [.sliding, .csa, .hca, .csa, .hca, .sliding])
        #expect(hf.ropeDim == 16 && hf.compressRope.type == "yarn" && hf.mainRope.type == "default")
    }
}

@Suite struct CheckpointErrorTests {
    @Test func missingTensorIsNamed() throws {
        let dir = try scratchCopy(of: "tiny-released")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try rewrite(dir) { $0.removeValue(forKey: "layers.3.attn.indexer.wq_b.weight") }
        #expect(throws: CheckpointError.missingTensor(
            name: "layers.3.attn.indexer.wq_b.weight' (or 'model.layers.3.self_attn.compressor.indexer.q_b_proj.weight",
            directory: dir, files: ["model.safetensors"])) {
            _ = try DeepSeekV4Model(directory: dir)
        }
    }

    @Test func misShapedTensorIsNamed() throws {
        let dir = try scratchCopy(of: "tiny-released")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try rewrite(dir) { t in
            let old = t["layers.2.attn.wkv.weight"]!
            t["layers.2.attn.wkv.weight"] = TensorBlob(dtype: old.dtype, shape: [old.shape[1], old.shape[0]], bytes: old.bytes)
        }
        #expect(throws: CheckpointError.shapeMismatch(tensor: "layers.2.attn.wkv.weight", path: dir + "/model.safetensors", expected: [64, 48], actual: [48, 64])) {
            _ = try DeepSeekV4Model(directory: dir)
        }
    }

    @Test func expertIdOutOfRangeIsNamed() throws {
        let dir = try scratchCopy(of: "tiny-released")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try rewrite(dir) { t in
            let old = t["layers.0.ffn.gate.tid2eid"]!
            var ids = old.bytes.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
            ids[5] = 99
            t["layers.0.ffn.gate.tid2eid"] = TensorBlob(dtype: .i64, shape: old.shape, bytes: ids.withUnsafeBufferPointer { Data(buffer: $0) })
        }
        #expect(throws: CheckpointError.invalidValue(tensor: "layers.0.ffn.gate.tid2eid", path: dir + "/model.safetensors", reason: "expert id 99 outside 0..<8")) {
            _ = try DeepSeekV4Model(directory: dir)
        }
    }

    @Test func tokenOutOfRange() throws {
        let model = try DeepSeekV4Model(directory: fixture("tiny-released"))
        let state = model.makeState()
        #expect(throws: ModelError.tokenOutOfRange(index: 1, id: 256, vocabSize: 256)) {
            _ = try model.forward(tokens: [3, 256], state: state)
        }
        #expect(throws: ModelError.tokenOutOfRange(index: 0, id: -1, vocabSize: 256)) {
            _ = try model.forward(tokens: [-1], state: state)
        }
        #expect(throws: ModelError.emptyInput) { _ = try model.forward(tokens: [], state: state) }
        #expect(state.position == 0)
    }

    /// Reads model.safetensors of `dir`, lets `edit` change the tensors, writes it back.
    func rewrite(_ dir: String, _ edit: (inout [String: TensorBlob]) -> Void) throws {
        try SafetensorsWriter.rewrite(dir + "/model.safetensors", edit)
    }
}
