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

    /// One measured configuration: decode tok/s, and the fraction of the union-of-experts
    /// roofline (the dense weights once per step plus every expert any stream used, once, at
    /// the read bandwidth measured around the run).
    struct Result {
        var rate: Double
        var fraction: Double
        var unionBytesPerStep: Double
        var bandwidth: Double
    }

    func run() throws {
        let m: DeepSeekV4Model
        do { m = try DeepSeekV4Model(directory: model, kvCacheDType: kvCacheDType) } catch { fail("\(error)") }
        guard streams >= 1, promptTokens >= 1, decodeTokens >= 2, repeats >= 1 else { fail("counts must be positive (decode-tokens >= 2)") }
        let counter = ExpertUnionCounter(wrapping: m.executor, experts: m.routedExperts)
        m.executor = counter
        let traffic = m.weightTraffic
        let denseBytes = Double(traffic.activeBytesPerToken - traffic.routedBytesPerToken)
        let probe = BandwidthProbe()

        /// The decode steps after every stream has its first token: the median repeat.
        func measure(_ n: Int) throws -> Result {
            var results: [Result] = []
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
                let before = probe.measure()
                counter.reset()
                let start = Date()
                var tokens = 0, steps = 0
                while core.hasWork {
                    for (_, e) in core.step() { if case .token = e { tokens += 1 } }
                    steps += 1
                }
                let seconds = Date().timeIntervalSince(start)
                let bandwidth = (before + probe.measure()) / 2
                let bytes = denseBytes * Double(steps) + Double(counter.bytes)
                results.append(Result(
                    rate: Double(tokens) / seconds, fraction: bytes / 1e9 / bandwidth / seconds,
                    unionBytesPerStep: Double(counter.bytes) / Double(max(steps, 1)), bandwidth: bandwidth))
            }
            return results.sorted { $0.rate < $1.rate }[results.count / 2]
        }
        let one = try measure(1)
        let many = try measure(streams)
        if json {
            print("{\"streams\":\(streams),\"single_stream_tokens_per_second\":\(one.rate),\"aggregate_tokens_per_second\":\(many.rate),"
                + "\"speedup\":\(many.rate / one.rate),\"roofline_fraction\":\(many.fraction),\"single_stream_roofline_fraction\":\(one.fraction),"
                + "\"union_expert_bytes_per_step\":\(many.unionBytesPerStep),\"single_stream_expert_bytes_per_step\":\(one.unionBytesPerStep),"
                + "\"dense_bytes_per_step\":\(denseBytes),\"bandwidth_gbps\":\(many.bandwidth)}")
        } else {
            print(String(
                format: "1 stream: %.1f tok/s (%.0f%% of its roofline); %d streams: %.1f tok/s aggregate (%.2fx), %.0f%% of the union-of-experts roofline (per step: %.1f MB dense + %.1f MB of experts used by any stream, against %.1f MB for one; bandwidth %.1f GB/s)",
                one.rate, 100 * one.fraction, streams, many.rate, many.rate / one.rate, 100 * many.fraction, denseBytes / 1e6,
                many.unionBytesPerStep / 1e6, one.unionBytesPerStep / 1e6, many.bandwidth))
        }
    }
}
