// CheckpointCLITests.swift: `dsv4 logits` and `dsv4 inspect` on broken, extended, sharded
// and quantized checkpoints: errors name the tensor (or key) and the file and exit non-zero;
// extra tensors are reported and ignored; loading reports each shard; inspect's parameter
// counts and resident memory are checked against figures computed here.
import Checkpoint
import Foundation
import Testing

/// A scratch copy of `Tests/Fixtures/<name>`.
func scratchFixture(_ name: String) throws -> String {
    let dst = NSTemporaryDirectory() + "dsv4-cli-\(UUID().uuidString)"
    try FileManager.default.copyItem(atPath: packageRoot + "/Tests/Fixtures/" + name, toPath: dst)
    return dst
}

/// Rewrites the JSON header text of the safetensors file at `path` (offsets are relative to
/// the data section, so the header may change length).
func rewriteHeader(_ path: String, _ edit: (String) -> String) throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    let header = edit(String(decoding: data[8..<(8 + n)], as: UTF8.self))
    var out = Data()
    var len = UInt64(header.utf8.count).littleEndian
    out.append(Data(bytes: &len, count: 8))
    out.append(Data(header.utf8))
    out.append(data[(8 + n)...])
    try out.write(to: URL(fileURLWithPath: path))
}

func editConfig(_ dir: String, _ edit: (inout [String: Any]) -> Void) throws {
    let url = URL(fileURLWithPath: dir + "/config.json")
    var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    edit(&obj)
    try JSONSerialization.data(withJSONObject: obj).write(to: url)
}

/// The logits tensor of a file written by `dsv4 logits`.
func readLogits(_ path: String) throws -> [Float] {
    let f = try SafetensorsFile(path: path)
    return try TensorView(info: try #require(f.info("logits")), file: f).floats()
}

/// The first number of `line` after `prefix`, with its unit (B, KiB, MiB, GiB) applied.
func bytesFigure(in text: String, after prefix: String) -> Double? {
    guard let r = text.range(of: prefix) else { return nil }
    let words = text[r.upperBound...].split(separator: " ", maxSplits: 2)
    guard words.count >= 2, let v = Double(words[0]) else { return nil }
    let unit = words[1].trimmingCharacters(in: CharacterSet(charactersIn: ",;()"))
    let scale: [String: Double] = ["B": 1, "KiB": 1024, "MiB": 1_048_576, "GiB": 1_073_741_824]
    return scale[unit].map { v * $0 }
}

@Suite(.serialized) struct CheckpointCLITests {
    /// Each broken checkpoint makes `dsv4 logits` exit non-zero, without a crash, with a message
    /// naming what is wrong (tensor or config key) and the file it is in (or the folder searched).
    @Test func logitsNamesTheTensorAndTheFile() throws {
        typealias Breakage = (what: String, base: String, breakIt: (String) throws -> Void, needles: (String) -> [String])
        let single = "/model.safetensors"
        let shard1 = "/model-00001-of-00003.safetensors"
        let cases: [Breakage] = [
            ("missing tensor", "tiny-released", { d in
                try SafetensorsWriter.rewrite(d + single) { $0.removeValue(forKey: "layers.3.attn.indexer.wq_b.weight") }
            }, { d in ["missing tensor", "layers.3.attn.indexer.wq_b.weight", d, "model.safetensors"] }),
            ("mis-shaped tensor", "tiny-released", { d in
                try SafetensorsWriter.rewrite(d + single) { t in
                    let old = t["layers.2.attn.wkv.weight"]!
                    t["layers.2.attn.wkv.weight"] = TensorBlob(dtype: old.dtype, shape: [old.shape[1], old.shape[0]], bytes: old.bytes)
                }
            }, { d in ["layers.2.attn.wkv.weight", d + single, "has shape [48, 64], expected [64, 48]"] }),
            ("unknown dtype", "tiny-released", { d in
                try rewriteHeader(d + single) { h in
                    let r = h.range(of: "\"layers.1.attn.wkv.weight\":{\"dtype\":\"BF16\"")!
                    return h.replacingCharacters(in: r, with: "\"layers.1.attn.wkv.weight\":{\"dtype\":\"Q4_K\"")
                }
            }, { d in ["layers.1.attn.wkv.weight", d + single, "unknown dtype 'Q4_K'"] }),
            ("corrupt header entry", "tiny-released", { d in
                try rewriteHeader(d + single) { h in
                    let r = h.range(of: "\"layers.4.ffn_norm.weight\":{\"dtype\":\"BF16\",\"shape\"")!
                    return h.replacingCharacters(in: r, with: "\"layers.4.ffn_norm.weight\":{\"dtype\":\"BF16\",\"shapes\"")
                }
            }, { d in ["corrupt safetensors header", d + single, "layers.4.ffn_norm.weight"] }),
            ("header not JSON", "tiny-released", { d in
                try rewriteHeader(d + single) { h in "[" + h.dropFirst() }
            }, { d in ["corrupt safetensors header", d + single, "not valid JSON"] }),
            ("truncated file", "tiny-released", { d in
                let h = try FileHandle(forUpdating: URL(fileURLWithPath: d + single))
                try h.truncate(atOffset: try h.seekToEnd() - 1000)
                try h.close()
            }, { d in ["truncated", d + single, "tensor '"] }),
            ("missing scale", "tiny-fp8", { d in
                try SafetensorsWriter.rewrite(d + shard1) { $0.removeValue(forKey: "layers.1.attn.wq_b.scale") }
                let url = URL(fileURLWithPath: d + "/model.safetensors.index.json")
                var idx = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
                var map = idx["weight_map"] as! [String: String]
                map.removeValue(forKey: "layers.1.attn.wq_b.scale")
                idx["weight_map"] = map
                try JSONSerialization.data(withJSONObject: idx).write(to: url)
            }, { d in ["layers.1.attn.wq_b.weight", d + shard1, "no scale tensor"] }),
            ("missing config key", "tiny-released", { d in
                try editConfig(d) { $0.removeValue(forKey: "hc_mult") }
            }, { d in [d + "/config.json", "'hc_mult'", "missing"] }),
            ("inconsistent schedule", "tiny-hf", { d in
                try editConfig(d) { $0["num_hash_layers"] = 3 }
            }, { d in [d + "/config.json", "'num_hash_layers'", "mlp_layer_types[2]"] }),
        ]
        for c in cases {
            let dir = try scratchFixture(c.base)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try c.breakIt(dir)
            let r = try runDSV4(["logits", "--model", dir, "--input", dir + "/input_ids.json", "--output", dir + "/out.safetensors"])
            #expect(r.status != 0, "\(c.what): should fail")
            #expect(!r.stderr.contains("Fatal error") && r.status != 132 && r.status != 134, "\(c.what) crashed: \(r.stderr)")
            for needle in c.needles(dir) {
                #expect(r.stderr.contains(needle), "\(c.what): '\(needle)' missing from: \(r.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/out.safetensors"), "\(c.what): no output on failure")
        }
    }

    /// A tensor the model does not know is reported by name and ignored: logits and inspect
    /// run, and the logits are bit-identical to the checkpoint without it.
    @Test func unknownExtraTensorIsReportedNotFatal() throws {
        let dir = try scratchFixture("tiny-released")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = dir + "/short.json"
        try Data("[5, 17, 200, 3, 99, 42, 7, 128, 250, 1, 0, 64]".utf8).write(to: URL(fileURLWithPath: ids))
        let before = try runDSV4(["logits", "--model", dir, "--input", ids, "--output", dir + "/a.safetensors"])
        #expect(before.status == 0, "\(before.stderr)")
        #expect(!before.stderr.contains("unknown tensor"))

        try SafetensorsWriter.rewrite(dir + "/model.safetensors") {
            $0["layers.0.attn.converter_extra"] = TensorBlob(shape: [4], floats: [1, 2, 3, 4])
        }
        let after = try runDSV4(["logits", "--model", dir, "--input", ids, "--output", dir + "/b.safetensors"])
        #expect(after.status == 0, "\(after.stderr)")
        #expect(after.stderr.contains("1 unknown tensor(s)") && after.stderr.contains("layers.0.attn.converter_extra"), "\(after.stderr)")
        #expect(try readLogits(dir + "/a.safetensors") == readLogits(dir + "/b.safetensors"))

        let inspect = try runDSV4(["inspect", "--model", dir])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        #expect(inspect.stdout.contains("unused tensors: 1 (e.g. layers.0.attn.converter_extra)"), "\(inspect.stdout)")

        // The MTP block of a released checkpoint is recognised as such, for logits too.
        let fp8 = packageRoot + "/Tests/Fixtures/tiny-fp8"
        let mtp = try runDSV4(["logits", "--model", fp8, "--input", ids, "--output", dir + "/c.safetensors"])
        #expect(mtp.status == 0, "\(mtp.stderr)")
        #expect(mtp.stderr.contains("MTP block: 6 tensors recognised") && !mtp.stderr.contains("unknown tensor"), "\(mtp.stderr)")
    }

    /// `--progress` prints one line per shard once it is mapped and verified, with the number
    /// of tensors verified, which is the index's count for that shard.
    @Test func progressReportsEachShardVerified() throws {
        let dir = packageRoot + "/Tests/Fixtures/tiny-fp8"
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))) as! [String: Any]
        let perShard = Dictionary(grouping: (index["weight_map"] as! [String: String]).values, by: { $0 }).mapValues(\.count)
        #expect(perShard.count == 3)
        let out = NSTemporaryDirectory() + "dsv4-cli-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: out) }
        for args in [["inspect", "--model", dir, "--progress"],
                     ["logits", "--model", dir, "--input", dir + "/input_ids.json", "--output", out, "--mode", "chunked=64", "--progress"]] {
            let r = try runDSV4(args)
            #expect(r.status == 0, "\(r.stderr)")
            let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("shard ") }
            #expect(lines.count == 3, "\(args[0]): \(r.stderr)")
            for (i, shard) in perShard.keys.sorted().enumerated() {
                let want = "shard \(i + 1)/3 \(shard): mapped "
                let line = lines.first { $0.hasPrefix(want) }
                #expect(line?.contains("verified \(perShard[shard]!) tensors") == true, "\(args[0]): \(want)… in \(r.stderr)")
            }
            #expect(lines.last?.hasSuffix("(100%)") == true)
        }
    }

    /// inspect's parameter counts equal the checkpoint's own: every main-model tensor's logical
    /// elements (two FP4 values per packed byte; no scales, no MTP), with only
    /// `num_experts_per_tok` of each layer's routed experts counted as active.
    @Test(arguments: ["tiny-fp8", "tiny-released", "tiny-hf"])
    func inspectCountsTheCheckpointsParameters(fixture name: String) throws {
        let dir = packageRoot + "/Tests/Fixtures/" + name
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
        let experts = config["n_routed_experts"] as! Int
        let perToken = config["num_experts_per_tok"] as! Int
        let store = try TensorStore(directory: dir)
        var total = 0
        var routed = 0
        for name in store.names where !name.hasPrefix("mtp.") && !name.hasSuffix(".scale") {
            let v = store.view(name)!
            let n = v.info.elementCount * (v.dtype == .i8 ? 2 : 1)
            total += n
            if name.contains(".ffn.experts.") { routed += n }
        }
        #expect(routed > 0 && routed % experts == 0)
        let active = total - routed + routed / experts * perToken
        let r = try runDSV4(["inspect", "--model", dir])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("parameters: \(total) total, \(active) active per token"), "want \(total)/\(active) in:\n\(r.stdout)")
    }

    /// Loading a quantized checkpoint maps it: the pages of the checkpoint resident in the
    /// process and the memory the load added stay a small fraction of the file size.
    @Test func quantizedCheckpointStaysMappedAfterLoad() throws {
        let dir = NSTemporaryDirectory() + "dsv4-cli-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // tiny-fp8's config with 32 routed experts of width 1024: about 48 MB of FP8/FP4.
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: packageRoot + "/Tests/Fixtures/tiny-fp8/config.json"))) as! [String: Any]
        obj["n_routed_experts"] = 32
        obj["moe_intermediate_size"] = 1024
        obj.removeValue(forKey: "quantization_config")
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: dir + "/in.json"))
        // The generator's speed is not under test: use the release binary when there is one.
        let release = packageRoot + "/.build/release/dsv4"
        let maker = FileManager.default.isExecutableFile(atPath: release) ? release : dsv4Binary()
        let model = dir + "/model"
        let c = try runDSV4(["create-model", "--config", dir + "/in.json", "--output", model, "--quantize", "fp8", "--shard-size-mib", "8"], binary: maker)
        #expect(c.status == 0, "\(c.stderr)")

        let store = try TensorStore(directory: model)
        let fileBytes = Double(store.fileBytes)
        #expect(fileBytes > 20e6 && store.files.count >= 3, "\(fileBytes) bytes in \(store.files.count) files")
        #expect(Double(store.bytesByDType[.i8, default: 0] + store.bytesByDType[.f8e4m3, default: 0]) > 0.8 * fileBytes)

        let r = try runDSV4(["inspect", "--model", model])
        #expect(r.status == 0, "\(r.stderr)")
        let added = try #require(bytesFigure(in: r.stdout, after: "of which "), "\(r.stdout)")
        let pages = try #require(bytesFigure(in: r.stdout, after: "checkpoint pages resident in this process: "), "\(r.stdout)")
        print("quantized checkpoint of \(Int(fileBytes)) bytes in \(store.files.count) files: load added \(Int(added)) bytes resident, \(Int(pages)) bytes of checkpoint pages")
        #expect(pages < 0.05 * fileBytes, "checkpoint pages resident: \(pages) of \(fileBytes) bytes")
        #expect(added < 0.25 * fileBytes, "the load added \(added) bytes of resident memory for a \(fileBytes)-byte checkpoint")
    }
}
