// GenerateCommand.swift: `dsv4 generate`, streams a completion through the engine.
import ArgumentParser
import DeepSeekV4
import Engine
import Foundation
import Tokenization

struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate tokens for a prompt through the engine; tokens on stdout, timing on stderr.")

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

    @Option(name: .customLong("kv-cache-memory"), help: "KV/state cache budget in bytes.")
    var kvCacheMemory = 1 << 30

    func run() async throws {
        guard (prompt == nil) != (promptIds == nil) else { fail("give exactly one of --prompt TEXT or --prompt-ids JSON") }
        var tokenizer: BPETokenizer?
        let ids: [Int]
        if let prompt {
            do { tokenizer = try BPETokenizer(path: model) } catch { fail("\(error)") }
            ids = tokenizer!.encode(prompt)
            guard !ids.isEmpty else { fail("--prompt is empty") }
        } else {
            guard let data = promptIds!.data(using: .utf8), let parsed = try? JSONDecoder().decode([Int].self, from: data) else {
                fail("--prompt-ids must be a JSON array of integers")
            }
            ids = parsed
        }
        var decoders = [IncrementalDecoder](repeating: IncrementalDecoder(), count: max(n, 1))
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

        let m: DeepSeekV4Model
        do { m = try DeepSeekV4Model(directory: model) } catch { fail("\(error)") }
        let engine = EngineLoop(model: m, configuration: EngineConfiguration(cacheBytes: kvCacheMemory), detokenize: tokenizer.map { t in { t.decode($0) } })
        defer { engine.shutdown() }
        let start = Date()
        var firstToken: Date?
        var generated = 0
        var cached = 0
        let stream: AsyncStream<EngineEvent>
        do { stream = try engine.submit(prompt: ids, parameters: p).events } catch { fail("\(error)") }
        for await event in stream {
            switch event {
            case .started(_, let c): cached = c
            case .token(let choice, let s):
                if firstToken == nil { firstToken = Date() }
                generated += 1
                if let tokenizer {
                    if m.eosTokenIds.contains(s.token) { break }
                    let text = decoders[choice].push(s.token, tokenizer: tokenizer)
                    FileHandle.standardOutput.write(Data((n > 1 && !text.isEmpty ? "[\(choice)] \(text)" : text).utf8))
                } else {
                    FileHandle.standardOutput.write(Data((n > 1 ? "\(choice): \(s.token)\n" : "\(s.token)\n").utf8))
                }
            case .finished(let choice, let reason, _):
                if let tokenizer { FileHandle.standardOutput.write(Data((decoders[choice].finish() + "\n").utf8)); _ = tokenizer }
                FileHandle.standardError.write(Data("dsv4: choice \(choice) finished: \(reason.rawValue)\n".utf8))
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
