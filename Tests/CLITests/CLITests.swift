// CLITests.swift: the `dsv4` executable end to end: logits files in every mode, clear errors
// and non-zero exits on bad input, and the release build's speed on the tiny model.
import Checkpoint
import Foundation
import Testing

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The dsv4 binary next to the test bundle (same build configuration).
func dsv4Binary() -> String {
    let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [bundleDir.appendingPathComponent("dsv4").path, packageRoot + "/.build/debug/dsv4"] where FileManager.default.isExecutableFile(atPath: candidate) {
        return candidate
    }
    return packageRoot + "/.build/debug/dsv4"
}

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
    let seconds: Double
}

func runDSV4(_ args: [String], binary: String = dsv4Binary()) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let start = Date()
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self), seconds: Date().timeIntervalSince(start))
}

let tinyHF = packageRoot + "/Tests/Fixtures/tiny-hf"

@Suite(.serialized) struct CLITests {
    @Test(arguments: ["full", "decode", "chunked=7"])
    func logitsFileMatchesReference(mode: String) throws {
        let out = NSTemporaryDirectory() + "dsv4-cli-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try runDSV4(["logits", "--model", tinyHF, "--input", tinyHF + "/input_ids.json", "--output", out, "--mode", mode])
        #expect(r.status == 0, "\(r.stderr)")
        let f = try SafetensorsFile(path: out)
        let info = try #require(f.info("logits"))
        #expect(info.dtype == .f32 && info.shape == [640, 256])
        let ours = try TensorView(info: info, file: f).floats()
        let refFile = try SafetensorsFile(path: tinyHF + "/reference.safetensors")
        let ref = try TensorView(info: try #require(refFile.info("logits")), file: refFile).floats()
        let worst = zip(ours, ref).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-4)
    }

    @Test func badInputGivesLocatedErrors() throws {
        let dir = NSTemporaryDirectory() + "dsv4-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ name: String, _ text: String) -> String {
            FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(text.utf8))
            return dir + "/" + name
        }
        let cases: [([String], String)] = [
            (["logits", "--model", tinyHF, "--input", write("oob.json", "[1, 2, 256]"), "--output", dir + "/o"], "token id 256 at index 2 is outside the vocabulary"),
            (["logits", "--model", tinyHF, "--input", write("bad.json", "[1, \"x\"]"), "--output", dir + "/o"], "element 1 is not an integer token id"),
            (["logits", "--model", tinyHF, "--input", write("obj.json", "{\"ids\": [1]}"), "--output", dir + "/o"], "expected a JSON array of token ids"),
            (["logits", "--model", tinyHF, "--input", write("empty.json", "[]"), "--output", dir + "/o"], "the token list is empty"),
            (["logits", "--model", tinyHF, "--input", dir + "/absent.json", "--output", dir + "/o"], "cannot read input file"),
            (["logits", "--model", dir + "/nomodel", "--input", write("ok.json", "[1]"), "--output", dir + "/o"], "config.json"),
            (["logits", "--model", tinyHF, "--input", write("ok2.json", "[1]"), "--output", dir + "/o", "--mode", "chunked=0"], "mode"),
        ]
        for (args, message) in cases {
            let r = try runDSV4(args)
            #expect(r.status != 0, "\(args) should fail")
            #expect(r.stderr.contains(message), "\(args): stderr was \(r.stderr)")
            #expect(!r.stderr.contains("Fatal error"), "\(args) crashed: \(r.stderr)")
        }
    }

    /// `dsv4 inspect` on the released FP8/FP4 fixture prints the dtypes, the MTP block, cache
    /// bytes per token and memory figures.
    @Test func inspectDescribesAReleasedCheckpoint() throws {
        let r = try runDSV4(["inspect", "--model", packageRoot + "/Tests/Fixtures/tiny-fp8"])
        #expect(r.status == 0, "\(r.stderr)")
        for needle in ["F8_E4M3", "F8_E8M0", "packed FP4", "MTP block: 6 tensors", "attention schedule: HCSCHC",
                       "cache per token of context (--kv-cache-dtype f32): 352.0 B", "bf16 176.0 B", "fp8 111.0 B",
                       "resident memory after load:",
                       "checkpoint pages resident", "largest context that fits:"] {
            #expect(r.stdout.contains(needle), "missing '\(needle)' in:\n\(r.stdout)")
        }
        #expect(r.stderr.isEmpty, "no progress lines for a small checkpoint on a pipe: \(r.stderr)")
        let fp8 = try runDSV4(["inspect", "--model", packageRoot + "/Tests/Fixtures/tiny-fp8", "--kv-cache-dtype", "fp8"])
        #expect(fp8.stdout.contains("cache per token of context (--kv-cache-dtype fp8): 111.0 B"), "\(fp8.stdout)")
        let bad = try runDSV4(["inspect", "--model", packageRoot + "/Tests/Fixtures/tiny-fp8", "--kv-cache-dtype", "fp4"])
        #expect(bad.status != 0 && bad.stderr.contains("kv-cache-dtype"), "\(bad.stderr)")
    }

    /// `dsv4 bench decode-depth` decodes (and prefills a chunk) at every depth from a random
    /// history (JSON lines with a ratio to the first depth); a depth past the model's positions
    /// is a located error.
    @Test func decodeDepthBenchReportsEveryDepth() throws {
        let r = try runDSV4([
            "bench", "decode-depth", "--model", packageRoot + "/Tests/Fixtures/tiny-fp8", "--depths", "0,640",
            "--decode-tokens", "2", "--repeats", "1", "--kv-cache-dtype", "fp8", "--prefill-chunk", "64", "--json",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let rows = r.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(rows.map { $0["depth"] as? Int } == [0, 640], "\(r.stdout)")
        #expect(rows.allSatisfy { ($0["decode_tokens_per_second"] as? Double ?? 0) > 0 && $0["kv_cache_dtype"] as? String == "fp8" })
        #expect(rows.allSatisfy { ($0["prefill_tokens_per_second"] as? Double ?? 0) > 0 && $0["prefill_chunk"] as? Int == 64 })
        #expect(rows.first?["ratio_to_first"] as? Double == 1)
        let bad = try runDSV4(["bench", "decode-depth", "--model", packageRoot + "/Tests/Fixtures/tiny-fp8", "--depths", "0,99999999"])
        #expect(bad.status != 0 && bad.stderr.contains("depth 99999999"), "\(bad.stderr)")
    }

    /// `dsv4 bench throughput` judges N streams against the union-of-experts roofline: the
    /// experts one step reads are at least one stream's and at most N streams' worth.
    @Test func throughputBenchReportsTheUnionOfExperts() throws {
        let r = try runDSV4([
            "bench", "throughput", "--model", packageRoot + "/Tests/Fixtures/tiny-fp8", "--streams", "4",
            "--prompt-tokens", "8", "--decode-tokens", "3", "--repeats", "1", "--json",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        let one = o["single_stream_expert_bytes_per_step"] as? Double ?? 0
        let union = o["union_expert_bytes_per_step"] as? Double ?? 0
        #expect(one > 0 && union > one && union <= 4 * one, "\(o)")
        #expect((o["dense_bytes_per_step"] as? Double ?? 0) > 0)
        let fraction = o["roofline_fraction"] as? Double ?? 0
        #expect(fraction > 0 && fraction < 2, "\(o)")
    }

    /// `create-model --quantize fp8` writes a sharded released-layout folder that loads and runs.
    @Test func createModelWritesAQuantizedCheckpoint() throws {
        let dir = NSTemporaryDirectory() + "dsv4-cli-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cfg = packageRoot + "/Tests/Fixtures/tiny-fp8/config.json"
        let c = try runDSV4(["create-model", "--config", cfg, "--output", dir, "--quantize", "fp8", "--shard-size-mib", "1"])
        #expect(c.status == 0, "\(c.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/model.safetensors.index.json"))
        let store = try TensorStore(directory: dir)
        #expect(store.files.count >= 2)
        #expect(store.view("layers.1.attn.wq_b.weight")?.dtype == .f8e4m3 && store.view("layers.1.attn.wq_b.scale")?.dtype == .f8e8m0)
        #expect(store.view("layers.0.ffn.experts.0.w1.weight")?.dtype == .i8)
        let out = dir + "/logits.safetensors"
        let ids = packageRoot + "/Tests/Fixtures/tiny-fp8/input_ids.json"
        let r = try runDSV4(["logits", "--model", dir, "--input", ids, "--output", out, "--mode", "chunked=50"])
        #expect(r.status == 0, "\(r.stderr)")
        let f = try SafetensorsFile(path: out)
        let logits = try TensorView(info: try #require(f.info("logits")), file: f).floats()
        #expect(logits.allSatisfy { $0.isFinite })
    }

    /// The release build computes a 640-token full pass of the 256-vocab fixture in under a
    /// second. The bundled default model (models/dsv4-tiny, vocab 129,280) is timed too: its
    /// BF16 vocabulary head alone takes ~0.85 s of the ~1.2 s measured (bench/RESULTS.md), so
    /// its bound, 5 s, only catches regressions (2.4 s was seen while three builds shared the
    /// two cores). The time is the forward pass dsv4 reports
    /// (load excluded), best of three runs, so a loaded 2-core machine does not fail it by a
    /// stray stall.
    @Test func releaseFullPassIsFast() throws {
        let release = packageRoot + "/.build/release/dsv4"
        guard FileManager.default.isExecutableFile(atPath: release) else {
            Issue.record("release binary missing: run tools/setup.sh (it builds it)")
            return
        }
        let tmp = NSTemporaryDirectory() + "dsv4-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let tiny = try defaultModel(release: release, scratch: tmp)
        let ids = tmp + "/ids.json"
        let tinyIds = (0..<640).map { ($0 * 7919 + 13) % 129_280 }
        try JSONSerialization.data(withJSONObject: tinyIds).write(to: URL(fileURLWithPath: ids))
        for (model, input, bound) in [(tinyHF, tinyHF + "/input_ids.json", 1.0), (tiny, ids, 5.0)] {
            var best = Double.infinity
            for _ in 0..<3 {
                let r = try runDSV4(["logits", "--model", model, "--input", input, "--output", tmp + "/out.safetensors"], binary: release)
                #expect(r.status == 0, "\(r.stderr)")
                best = min(best, try #require(forwardSeconds(r.stderr), "\(r.stderr)"))
                if best < bound / 2 { break }
            }
            print("640-token full pass of \(model): \(best) s (best of up to 3)")
            #expect(best < bound, "640-token full pass of \(model) took \(best) s")
        }
    }

    /// The seconds of the forward pass in `dsv4 logits`' summary line ("640 tokens in 0.123 s").
    func forwardSeconds(_ stderr: String) -> Double? {
        guard let r = stderr.range(of: " tokens in ") else { return nil }
        return Double(stderr[r.upperBound...].prefix { $0 != " " })
    }

    /// models/dsv4-tiny as tools/setup.sh creates it (DSV4_HOME or ~/.cache/dsv4), else created
    /// here from the same config and seed.
    func defaultModel(release: String, scratch: String) throws -> String {
        let config = packageRoot + "/models/dsv4-tiny/config.json"
        let home = ProcessInfo.processInfo.environment["DSV4_HOME"] ?? (NSHomeDirectory() + "/.cache/dsv4")
        let cached = home + "/models/dsv4-tiny"
        if FileManager.default.fileExists(atPath: cached + "/model.safetensors"),
            FileManager.default.contents(atPath: cached + "/config.json") == FileManager.default.contents(atPath: config)
        {
            return cached
        }
        let dir = scratch + "/dsv4-tiny"
        let r = try runDSV4(["create-model", "--config", config, "--output", dir, "--seed", "0"], binary: release)
        #expect(r.status == 0, "\(r.stderr)")
        return dir
    }
}
