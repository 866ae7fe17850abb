// QuantizedCheckpointTests.swift: the released FP8/FP4 layout (Tests/Fixtures/tiny-fp8, built
// by tools/make_released_fixture.py) is read in place, and its bad variants give errors that
// name the tensor and the file.
import Checkpoint
import DeepSeekV4
import Foundation
import Tensors
import Testing

@Suite struct QuantizedCheckpointTests {
    let name = "tiny-fp8"

    /// Reads `shard` of `dir`, lets `edit` change its tensors, writes it back.
    func rewrite(_ dir: String, _ shard: String, _ edit: (inout [String: TensorBlob]) -> Void) throws {
        try SafetensorsWriter.rewrite(dir + "/" + shard, edit)
    }

    func editIndex(_ dir: String, _ edit: (inout [String: String]) -> Void) throws {
        let url = URL(fileURLWithPath: dir + "/model.safetensors.index.json")
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        var map = obj["weight_map"] as! [String: String]
        edit(&map)
        obj["weight_map"] = map
        try JSONSerialization.data(withJSONObject: obj).write(to: url)
    }

    let shard1 = "model-00001-of-00003.safetensors"
    let shard2 = "model-00002-of-00003.safetensors"

    @Test func storedFormatsAreKeptAndMTPIsReported() throws {
        let dir = fixture(name)
        let model = try DeepSeekV4Model(directory: dir)
        let bytes = model.store.bytesByDType
        #expect(bytes[.f8e4m3, default: 0] > 0 && bytes[.i8, default: 0] > 0 && bytes[.f8e8m0, default: 0] > 0)
        #expect(model.store.files.count == 3)
        // Every scale is used; only the MTP block is left over.
        #expect(!model.unusedTensors.isEmpty)
        #expect(model.unusedTensors.allSatisfy { $0.hasPrefix("mtp.") })
        // The one MTP-prefix check (`dsv4 inspect` and `dsv4 logits` report these two lists).
        #expect(model.mtpTensors == model.unusedTensors && model.mtpTensors.count == 6)
        #expect(model.unknownTensors.isEmpty)
        let c = model.config
        #expect(c.hiddenSize > 128 && c.hiddenSize % 128 != 0, "the fixture should have partial 128-tiles")
    }

    @Test func missingScaleIsNamed() throws {
        let dir = try scratchCopy(of: name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try rewrite(dir, shard1) { $0.removeValue(forKey: "layers.1.attn.wq_b.scale") }
        try editIndex(dir) { $0.removeValue(forKey: "layers.1.attn.wq_b.scale") }
        #expect(throws: CheckpointError.missingScale(
            tensor: "layers.1.attn.wq_b.weight", path: dir + "/" + shard1,
            expected: ["layers.1.attn.wq_b.scale", "layers.1.attn.wq_b.weight_scale_inv"])) {
            _ = try DeepSeekV4Model(directory: dir)
        }
    }

    @Test func wrongScaleShapeIsNamed() throws {
        let dir = try scratchCopy(of: name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try rewrite(dir, shard1) { $0["layers.1.attn.wq_b.scale"] = TensorBlob(dtype: .f8e8m0, shape: [1, 1], bytes: Data([127])) }
        do {
            _ = try DeepSeekV4Model(directory: dir)
            Issue.record("loaded a checkpoint with a mis-shaped scale")
        } catch let e as CheckpointError {
            guard case .badScale(let t, let p, let reason) = e else { Issue.record("wrong error \(e)"); return }
            #expect(t == "layers.1.attn.wq_b.scale" && p == dir + "/" + shard1 && reason.contains("[2, 1]"))
        }
    }

    @Test func nanScaleByteIsNamed() throws {
        let dir = try scratchCopy(of: name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try rewrite(dir, shard1) { t in
            let old = t["layers.0.ffn.experts.3.w2.scale"]!
            var b = [UInt8](old.bytes)
            b[17] = 0xFF
            t["layers.0.ffn.experts.3.w2.scale"] = TensorBlob(dtype: old.dtype, shape: old.shape, bytes: Data(b))
        }
        #expect(throws: CheckpointError.badScale(
            tensor: "layers.0.ffn.experts.3.w2.scale", path: dir + "/" + shard1, reason: "element 17 is 0xFF (E8M0 NaN)")) {
            _ = try DeepSeekV4Model(directory: dir)
        }
    }

    @Test func oddPackedWidthIsNamed() throws {
        let dir = try scratchCopy(of: name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rows = 0, width = 0
        try rewrite(dir, shard1) { t in
            let old = t["layers.1.ffn.experts.0.w1.weight"]!
            rows = old.shape[0]
            width = old.shape[1] - 1
            t["layers.1.ffn.experts.0.w1.weight"] = TensorBlob(dtype: .i8, shape: [rows, width], bytes: old.bytes.prefix(rows * width))
        }
        do {
            _ = try DeepSeekV4Model(directory: dir)
            Issue.record("loaded a checkpoint with a bad packed width")
        } catch let e as CheckpointError {
            guard case .badPacking(let t, let p, _) = e else { Issue.record("wrong error \(e)"); return }
            #expect(t == "layers.1.ffn.experts.0.w1.weight" && p == dir + "/" + shard1)
            #expect(e.description.contains("\(width)"))
        }
    }

    @Test func absentShardIsNamed() throws {
        let dir = try scratchCopy(of: name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.removeItem(atPath: dir + "/" + shard2)
        do {
            _ = try DeepSeekV4Model(directory: dir)
            Issue.record("loaded a checkpoint with a shard missing")
        } catch let e as CheckpointError {
            guard case .missingShard(let p, let index, let tensor, let count) = e else { Issue.record("wrong error \(e)"); return }
            #expect(p == dir + "/" + shard2 && index.hasSuffix("model.safetensors.index.json"))
            #expect(tensor.hasPrefix("layers.") && count > 10)
        }
    }

    @Test func tensorInTwoShardsIsNamed() throws {
        let dir = try scratchCopy(of: name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var copy: TensorBlob?
        try rewrite(dir, shard1) { copy = $0["embed.weight"] }
        try rewrite(dir, shard2) { $0["embed.weight"] = copy }
        #expect(throws: CheckpointError.duplicateTensor(name: "embed.weight", firstPath: dir + "/" + shard1, secondPath: dir + "/" + shard2)) {
            _ = try DeepSeekV4Model(directory: dir)
        }
    }

    /// A converter's spelling: `weight_scale_inv` with float32 scales gives the same logits.
    @Test func float32WeightScaleInvIsAccepted() throws {
        let dir = try scratchCopy(of: name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let names = ["layers.1.attn.wq_b", "layers.0.ffn.experts.2.w1"]
        try rewrite(dir, shard1) { t in
            for n in names {
                let old = t.removeValue(forKey: n + ".scale")!
                let floats = old.bytes.map { Float(pow(2.0, Double(Int($0) - 127))) }
                t[n + ".weight_scale_inv"] = TensorBlob(shape: old.shape, floats: floats)
            }
        }
        try editIndex(dir) { m in
            for n in names {
                m.removeValue(forKey: n + ".scale")
                m[n + ".weight_scale_inv"] = shard1
            }
        }
        let ids = Array(try readIds(fixture(name)).prefix(40))
        let a = try DeepSeekV4Model(directory: fixture(name))
        let b = try DeepSeekV4Model(directory: dir)
        #expect(b.unusedTensors.allSatisfy { $0.hasPrefix("mtp.") })
        #expect(try run(a, ids, chunk: nil) == run(b, ids, chunk: nil))
    }
}
