// BenchCommand.swift: `dsv4 bench`, reproducible performance figures.
import ArgumentParser
import DeepSeekV4
import Engine
import CKernels
import Foundation
import Tensors

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure performance against ceilings measured in the same run.",
        subcommands: [DecodeBench.self, PrefillBench.self, KernelsBench.self, ThroughputBench.self, ContextBench.self, CacheDTypeBench.self, DecodeDepthBench.self, DiskTierBench.self])
}

/// Aggregate decode throughput of N concurrent streams against one stream.
struct ThroughputBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "throughput",
        abstract: "Decode tokens/s of 1 stream and of N concurrent streams through the engine (greedy).")

    @Option(help: "Model folder.") var model: String
    @Option(help: "Concurrent streams.") var streams = 8
    @Option(name: .customLong("prompt-tokens")) var promptTokens = 64
    @Option(name: .customLong("decode-tokens")) var decodeTokens = 32
    @Option(help: "Repeats; the median is reported.") var repeats = 3
    @Option(name: .customLong("kv-cache-dtype"), help: kvCacheDTypeHelp)
    var kvCacheDType: KVCacheDType = .f32
    @Flag var json = false

    func run() throws {
        let m: DeepSeekV4Model
        do { m = try DeepSeekV4Model(directory: model, kvCacheDType: kvCacheDType) } catch { fail("\(error)") }
        guard streams >= 1, promptTokens >= 1, decodeTokens >= 2, repeats >= 1 else { fail("counts must be positive (decode-tokens >= 2)") }

        /// Seconds spent in decode steps (after every stream has its first token), and tokens made.
        func measure(_ n: Int) throws -> Double {
            var rates: [Double] = []
            for r in 0..<repeats {
                let core = EngineCore(model: m, configuration: EngineConfiguration(cacheBytes: 1 << 30, tokenBudget: 4096, maxRunning: 256))
                var p = SamplingParameters()
                p.temperature = 0
                p.maxTokens = decodeTokens
                p.ignoreEOS = true
                for s in 0..<n {
                    let prompt = (0..<promptTokens).map { ($0 * 7919 + s * 104_729 + r * 31) % (m.vocabSize - 2) + 2 }
                    _ = try core.add(prompt: prompt, parameters: p)
                }
                // Prefill step(s) until every stream produced its first token.
                var firsts = 0
                while firsts < n {
                    for (_, e) in core.step() { if case .token = e { firsts += 1 } }
                }
                let start = Date()
                var tokens = 0
                while core.hasWork {
                    for (_, e) in core.step() { if case .token = e { tokens += 1 } }
                }
                rates.append(Double(tokens) / Date().timeIntervalSince(start))
            }
            return rates.sorted()[rates.count / 2]
        }
        let one = try measure(1)
        let many = try measure(streams)
        if json {
            print("{\"streams\":\(streams),\"single_stream_tokens_per_second\":\(one),\"aggregate_tokens_per_second\":\(many),\"speedup\":\(many / one)}")
        } else {
            print(String(format: "1 stream: %.1f tok/s; %d streams: %.1f tok/s aggregate (%.2fx)", one, streams, many, many / one))
        }
    }
}
