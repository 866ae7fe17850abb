// GenerateCommand.swift: `dsv4 generate`, streams a completion through the engine: text (or
// token ids) on stdout, with stop strings cut out of the text; logprobs, finish reasons and
// timing on stderr.
import ArgumentParser
import DeepSeekV4
import Engine
import Foundation
import Tokenization

struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate tokens for a prompt through the engine; tokens on stdout, timing on stderr.")
    /// Prompts at least this long show a prefill progress line on stderr.
    static let progressThreshold = 4096

    @Option(help: "Model folder.")
    var model: String

    @Option(help: "The prompt as text (tokenized with the model's tokenizer.json; the generated text goes to stdout).")
    var prompt: String?

    @Option(name: .customLong("prompt-ids"), help: "The prompt as a JSON array of token ids (token ids go to stdout).")
    var promptIds: String?

    @Option(name: .customLong("max-tokens"), help: "Tokens to generate at most.")
    var maxTokens = 32

    @Option(help: "Sampling temperature (0 = greedy).")
    var temperature: Float = 0

    @Option(name: .customLong("top-p")) var topP: Float = 1
    @Option(name: .customLong("top-k")) var topK = 0
    @Option(name: .customLong("min-p")) var minP: Float = 0
    @Option(name: .customLong("repetition-penalty")) var repetitionPenalty: Float = 1
    @Option(name: .customLong("presence-penalty")) var presencePenalty: Float = 0
    @Option(name: .customLong("frequency-penalty")) var frequencyPenalty: Float = 0
    @Option var seed: UInt64?
    @Option(help: "Completions to generate.") var n = 1
    @Flag(name: .customLong("ignore-eos")) var ignoreEOS = false
    @OptionGroup var parallel: ExpertParallelOptions

    @Option(name: .customLong("stop"), help: "Stop once the generated text contains this string (repeatable; not printed). Needs the model's tokenizer.json.")
    var stop: [String] = []

    @Option(name: .customLong("stop-token-ids"), help: "Comma-separated token ids that end generation, e.g. 1,2.")
    var stopTokenIds: String?

    @Option(name: .customLong("logprobs"), help: "Print each token's log-probability and this many alternatives (0-20) on stderr.")
    var logprobs: Int?

    @Option(name: .customLong("logit-bias"), help: #"JSON object of token id to bias in [-100, 100], e.g. '{"65": 5}'."#)
    var logitBias: String?

    @Option(name: .customLong("kv-cache-memory"), help: "KV/state cache budget in bytes.")
    var kvCacheMemory = 1 << 30
    @Option(name: .customLong("kv-cache-dtype"), help: kvCacheDTypeHelp)
    var kvCacheDType: KVCacheDType = .f32

    /// `--stop-token-ids 1,2`.
    static func parseTokenIDs(_ text: String) -> [Int]? {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let ids = parts.compactMap { Int($0) }
        return ids.count == parts.count && !ids.isEmpty ? ids : nil
    }

    /// `--logit-bias '{"65": 5}'`: token ids as keys, numbers as values (exits on bad text).
    static func parseLogitBias(_ text: String) -> [Int: Float] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            fail(#"--logit-bias must be a JSON object of token id to bias, e.g. '{"65": 5}'"#)
        }
        var out: [Int: Float] = [:]
        for (k, v) in object {
            guard let id = Int(k) else { fail("--logit-bias key '\(k)' is not a token id") }
            guard let n = v as? NSNumber, !(v is Bool) else { fail("--logit-bias value for \(k) is not a number") }
            out[id] = n.floatValue
        }
        return out
    }

    /// The sampling parameters the options ask for (bad values exit with the option named).
    func samplingParameters() -> SamplingParameters {
        var p = SamplingParameters()
        p.maxTokens = maxTokens
        p.temperature = temperature
        p.topP = topP
        p.topK = topK
        p.minP = minP
        p.repetitionPenalty = repetitionPenalty
        p.presencePenalty = presencePenalty
        p.frequencyPenalty = frequencyPenalty
        p.seed = seed
        p.n = n
        p.ignoreEOS = ignoreEOS
        p.stop = stop
        if let stopTokenIds {
            guard let parsed = Self.parseTokenIDs(stopTokenIds) else { fail("--stop-token-ids must be comma-separated integers, got '\(stopTokenIds)'") }
            p.stopTokenIds = parsed
        }
        if let logprobs {
            p.logprobs = true
            p.topLogprobs = logprobs
        }
        if let logitBias { p.logitBias = Self.parseLogitBias(logitBias) }
        return p
    }

    /// The prompt's token ids (--prompt encoded, or --prompt-ids), and the tokenizer when the
    /// run needs text (a text prompt, or stop strings).
    private func readPrompt() -> ([Int], BPETokenizer?) {
        if let prompt {
            let tokenizer: BPETokenizer
            do { tokenizer = try BPETokenizer(path: model) } catch { fail("\(error)") }
            let ids = tokenizer.encode(prompt)
            guard !ids.isEmpty else { fail("--prompt is empty") }
            return (ids, tokenizer)
        }
        guard let data = promptIds!.data(using: .utf8), let parsed = try? JSONDecoder().decode([Int].self, from: data) else {
            fail("--prompt-ids must be a JSON array of integers")
        }
        // Stop strings match text: the tokenizer decodes the generated ids for them.
        guard !stop.isEmpty else { return (parsed, nil) }
        do { return (parsed, try BPETokenizer(path: model)) } catch {
            fail("--stop needs the model's tokenizer.json to read the generated text: \(error)")
        }
    }

    func run() async throws {
        guard (prompt == nil) != (promptIds == nil) else { fail("give exactly one of --prompt TEXT or --prompt-ids JSON") }
        if let problem = ProcessMemory.cacheBudgetProblem(kvCacheMemory) { fail(problem) }
        let (ids, tokenizer) = readPrompt()
        let printText = promptIds == nil
        var decoders = [IncrementalDecoder](repeating: IncrementalDecoder(), count: max(n, 1))
        var p = samplingParameters()

        let m: DeepSeekV4Model
        do { m = try DeepSeekV4Model(directory: model, kvCacheDType: kvCacheDType) } catch { fail("\(error)") }
        if let world = ExpertParallelOptions.world {
            // Every rank samples the same tokens (rank 0's seed), so every rank runs the same steps.
            let seed = world.broadcast(withUnsafeBytes(of: p.seed ?? UInt64.random(in: .min ... .max)) { Array($0) })
            p.seed = seed.withUnsafeBytes { $0.load(as: UInt64.self) }
            parallel.attach(to: m, kvCacheDType: kvCacheDType, extra: [("prompt", ExpertParallelOptions.digest("\(ids)"))])
            if world.rank != 0 { ExpertParallelOptions.silenceOutput() }
        }
        let engine = EngineLoop(model: m, configuration: EngineConfiguration(cacheBytes: kvCacheMemory), detokenize: tokenizer.map { t in { t.decode($0) } })
        defer { engine.shutdown() }
        let start = Date()
        var firstToken: Date?
        var generated = 0
        var cached = 0
        var progressShown = false
        let stream: AsyncStream<EngineEvent>
        do { stream = try engine.submit(prompt: ids, parameters: p).events } catch { fail("\(error)") }
        // Text not yet printed: the tail that could be the start of a stop string is held
        // back until it cannot be, and a matched stop string is cut with what follows.
        let holdBack = max(0, (stop.map(\.count).max() ?? 0) - 1)
        var pending = [String](repeating: "", count: max(n, 1))
        func emit(_ choice: Int, _ text: String) {
            guard !text.isEmpty else { return }
            FileHandle.standardOutput.write(Data((n > 1 ? "[\(choice)] \(text)" : text).utf8))
        }
        let hidden = Set(m.eosTokenIds).union(p.stopTokenIds)
        for await event in stream {
            switch event {
            case .started(_, let c): cached = c
            case .prefill(let done, let total, _):
                // A progress line for long prompts, rewritten in place.
                if total >= Self.progressThreshold {
                    let secs = Date().timeIntervalSince(start)
                    FileHandle.standardError.write(Data(String(
                        format: "\rdsv4: prefill %d / %d tokens (%.0f%%), %.0f s, %.0f tok/s", done, total,
                        100 * Double(done) / Double(total), secs, Double(done - cached) / max(secs, 1e-9)).utf8))
                    progressShown = true
                }
            case .token(let choice, let s):
                if progressShown {
                    FileHandle.standardError.write(Data("\n".utf8))
                    progressShown = false
                }
                if firstToken == nil { firstToken = Date() }
                generated += 1
                if p.logprobs {
                    let top = s.top.map { "\($0.token):\(String(format: "%.4f", Double($0.logprob)))" }.joined(separator: " ")
                    FileHandle.standardError.write(Data(
                        "dsv4: logprob choice \(choice) token \(s.token) \(String(format: "%.4f", Double(s.logprob)))\(top.isEmpty ? "" : " top \(top)")\n".utf8))
                }
                if printText, let tokenizer {
                    if hidden.contains(s.token) { break }
                    pending[choice] += decoders[choice].push(s.token, tokenizer: tokenizer)
                    if !stop.contains(where: { pending[choice].contains($0) }), pending[choice].count > holdBack {
                        let cut = pending[choice].index(pending[choice].endIndex, offsetBy: -holdBack)
                        emit(choice, String(pending[choice][..<cut]))
                        pending[choice] = String(pending[choice][cut...])
                    }
                } else {
                    FileHandle.standardOutput.write(Data((n > 1 ? "\(choice): \(s.token)\n" : "\(s.token)\n").utf8))
                }
            case .finished(let choice, let reason, let stopString):
                if printText, let tokenizer {
                    var tail = pending[choice] + decoders[choice].finish()
                    if let stopString, let r = tail.range(of: stopString) { tail = String(tail[..<r.lowerBound]) }
                    emit(choice, tail)
                    FileHandle.standardOutput.write(Data("\n".utf8))
                    _ = tokenizer
                }
                let matched = stopString.map { " (stop string \"\($0)\")" } ?? ""
                FileHandle.standardError.write(Data("dsv4: choice \(choice) finished: \(reason.rawValue)\(matched)\n".utf8))
            case .failed(let e): fail("\(e)")
            }
        }
        let end = Date()
        let prefill = (firstToken ?? end).timeIntervalSince(start)
        let decode = end.timeIntervalSince(firstToken ?? end)
        FileHandle.standardError.write(Data(String(
            format: "dsv4: prompt %d tokens (%d cached) in %.3f s = %.1f tok/s; %d generated in %.3f s = %.1f tok/s\n",
            ids.count, cached, prefill, Double(ids.count - cached) / max(prefill, 1e-9), generated, decode,
            Double(max(generated - n, 0)) / max(decode, 1e-9)).utf8))
    }
}
