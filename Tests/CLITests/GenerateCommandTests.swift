// GenerateCommandTests.swift: `dsv4 generate` end to end on the tiny model with a byte-level
// tokenizer: stop strings cut from the text, stop token ids, logprobs, logit bias, and clear
// errors with non-zero exits for bad values.
import Foundation
import Testing

/// A model folder: the tiny fixture's config and weights plus a byte-level tokenizer.json
/// (token id b is byte b, GPT-2 byte alphabet, no merges), so the 256-token vocabulary reads
/// as text.
func tinyModelWithByteTokenizer() throws -> String {
    let dir = NSTemporaryDirectory() + "dsv4-gen-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for f in ["config.json", "model.safetensors"] {
        try FileManager.default.createSymbolicLink(atPath: dir + "/" + f, withDestinationPath: tinyHF + "/" + f)
    }
    var vocab: [String: Int] = [:]
    var n = 0
    for b in 0..<256 {
        let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
        let scalar = printable ? Unicode.Scalar(UInt32(b))! : Unicode.Scalar(UInt32(256 + n))!
        if !printable { n += 1 }
        vocab[String(Character(scalar))] = b
    }
    // V4's pre_tokenizer section as tokenizer.json spells it (any other is refused).
    let preTokenizer = try JSONSerialization.jsonObject(with: Data(v4PreTokenizerJSON.utf8))
    let json: [String: Any] = [
        "model": ["type": "BPE", "vocab": vocab, "merges": [String]()], "added_tokens": [[String: Any]](),
        "pre_tokenizer": preTokenizer,
    ]
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
    return dir
}

/// DeepSeek-V4's `pre_tokenizer` section, copied from its tokenizer.json.
let v4PreTokenizerJSON = ##"{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}"##

@Suite(.serialized) struct GenerateCommandTests {
    /// Sampling restricted (by a +30 bias) to the letters a–h, seeded: a reproducible string.
    static let letters = #"{"97": 30, "98": 30, "99": 30, "100": 30, "101": 30, "102": 30, "103": 30, "104": 30}"#

    func generate(_ model: String, _ extra: [String]) throws -> RunResult {
        try runDSV4(["generate", "--model", model, "--prompt", "hello", "--temperature", "1", "--seed", "3", "--max-tokens", "12",
                     "--ignore-eos", "--logit-bias", Self.letters] + extra)
    }

    @Test func stopStringsStopTokensAndLogprobs() throws {
        let model = try tinyModelWithByteTokenizer()
        defer { try? FileManager.default.removeItem(atPath: model) }
        let free = try generate(model, ["--logprobs", "2"])
        #expect(free.status == 0, "\(free.stderr)")
        let text = free.stdout.trimmingCharacters(in: .newlines)
        #expect(text.count == 12 && text.allSatisfy { ("a"..."h").contains($0) }, "text was '\(text)'")
        #expect(Set(text).count > 2, "seeded sampling should mix letters: '\(text)'")
        // One logprob line per token, each naming its token and two alternatives among a-h.
        let lines = free.stderr.split(separator: "\n").filter { $0.hasPrefix("dsv4: logprob choice 0 token ") }
        #expect(lines.count == 12)
        for (line, ch) in zip(lines, text) {
            #expect(line.hasPrefix("dsv4: logprob choice 0 token \(ch.asciiValue!) -"), "\(line)")
            #expect(line.split(separator: " ").filter { $0.contains(":") && !$0.hasPrefix("dsv4") }.count == 2, "\(line)")
        }
        #expect(free.stderr.contains("finished: length"))

        // A stop string of tokens 3 and 4: the text ends before its first occurrence.
        let chars = Array(text)
        let stop = String(chars[3...4])
        let cutAt = text.range(of: stop)!.lowerBound
        let stopped = try generate(model, ["--stop", "zz", "--stop", stop])
        #expect(stopped.status == 0, "\(stopped.stderr)")
        #expect(stopped.stdout == String(text[..<cutAt]) + "\n")
        #expect(stopped.stderr.contains("finished: stop (stop string \"\(stop)\")"))

        // A stop token id: generation ends at it and the token is not printed as text.
        let id = Int(chars[5].asciiValue!)
        let byID = try generate(model, ["--stop-token-ids", "255, \(id)"])
        #expect(byID.status == 0, "\(byID.stderr)")
        #expect(byID.stdout == String(text.prefix { $0 != chars[5] }) + "\n")
        #expect(byID.stderr.contains("finished: stop\n"))
    }

    @Test func badGenerateValuesFailWithClearErrors() throws {
        let model = try tinyModelWithByteTokenizer()
        defer { try? FileManager.default.removeItem(atPath: model) }
        let base = ["generate", "--model", model, "--prompt", "hello"]
        let cases: [([String], String)] = [
            (["--stop-token-ids", "1,x"], "--stop-token-ids must be comma-separated integers, got '1,x'"),
            (["--stop-token-ids", "999"], "invalid 'stop_token_ids': token id 999 is outside the vocabulary (0..<256)"),
            (["--logit-bias", "[1]"], "--logit-bias must be a JSON object"),
            (["--logit-bias", #"{"a": 1}"#], "--logit-bias key 'a' is not a token id"),
            (["--logit-bias", #"{"5": "x"}"#], "--logit-bias value for 5 is not a number"),
            (["--logit-bias", #"{"5": 500}"#], "invalid 'logit_bias': bias for token 5 must be in [-100, 100]"),
            (["--logprobs", "50"], "invalid 'top_logprobs'"),
            (["--top-p", "2"], "invalid 'top_p': must be in (0, 1]"),
            (["--temperature=-1"], "invalid 'temperature'"),
            (["--stop", ""], "invalid 'stop': stop strings must not be empty"),
            (["--max-tokens", "0"], "invalid 'max_tokens'"),
            (["--n", "99"], "invalid 'n'"),
            (["--kv-cache-memory", "1000"], "bytes of KV cache"),
            (["--kv-cache-memory", "0"], "--kv-cache-memory must be positive"),
            (["--kv-cache-memory", "1000000000000000"], "--kv-cache-memory 1000000000000000 exceeds this machine's memory"),
        ]
        for (extra, message) in cases {
            let r = try runDSV4(base + extra)
            #expect(r.status != 0, "\(extra) should fail")
            #expect(r.stderr.contains(message), "\(extra): stderr was \(r.stderr)")
            #expect(!r.stderr.contains("Fatal error"), "\(extra) crashed: \(r.stderr)")
            #expect(r.stdout.isEmpty, "\(extra) printed \(r.stdout)")
        }
        // Stop strings need text: the fixture without a tokenizer.json says so.
        let r = try runDSV4(["generate", "--model", tinyHF, "--prompt-ids", "[5, 6]", "--stop", "x"])
        #expect(r.status != 0 && r.stderr.contains("--stop needs the model's tokenizer.json"), "\(r.stderr)")
    }
}
