// DecodeDepthBench.swift: `dsv4 bench decode-depth`, decode speed at each depth against the
// shallowest, with the history filled by random entries instead of a prefill (a 1M-token
// prompt takes ~45 minutes to prefill on two cores; its decode is what this measures), and
// optionally the speed of one prefill chunk at each depth (the slope of a long prefill).
// Rounds alternate between the depths so that a noisy machine slows all of them alike.
import ArgumentParser
import DeepSeekV4
import Foundation
import Tensors

struct DecodeDepthBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode-depth",
        abstract: "Decode tok/s at each depth (history of random entries, no prefill), repeats interleaved; ratio to the first depth.")

    @OptionGroup var options: BenchModelOptions
    @Option(help: "Depths in tokens, comma separated; the first is the reference (e.g. 4096,1048576).") var depths = "4096,1048576"
    @Option(name: .customLong("decode-tokens"), help: "Tokens decoded per depth and repeat.") var decodeTokens = 32
    @Option(name: .customLong("prefill-chunk"), help: "Also time a prefill chunk of this many tokens at each depth and repeat (0: no).")
    var prefillChunk = 0

    func run() throws {
        let list = depths.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !list.isEmpty, list.allSatisfy({ ($0 ?? -1) >= 0 }) else { fail("--depths: non-negative integers separated by commas, got \"\(depths)\"") }
        let rounds = options.repeats
        guard decodeTokens >= 1, rounds >= 1, prefillChunk >= 0 else {
            fail("--decode-tokens and --repeats must be positive, --prefill-chunk not negative")
        }
        let m = options.load()
        let ns = list.map { $0! }
        var states: [SequenceState] = []
        for n in ns {
            guard n + rounds * (decodeTokens + prefillChunk) <= m.maxPositions else {
                fail("depth \(n) + \(rounds * (decodeTokens + prefillChunk)) tokens exceeds the model's \(m.maxPositions) positions")
            }
            let t0 = Date()
            states.append(try m.randomHistoryState(positions: n, seed: UInt64(n) &+ 17))
            FileHandle.standardError.write(Data(String(format: "  depth %d filled in %.1f s\n", n, Date().timeIntervalSince(t0)).utf8))
        }
        var seconds = [[Double]](repeating: [], count: ns.count)
        var chunkSeconds = [[Double]](repeating: [], count: ns.count)
        let chunk = (0..<prefillChunk).map { ($0 * 104_729) % (m.vocabSize - 2) + 2 }
        for _ in 0..<rounds {
            for (i, s) in states.enumerated() {
                if !chunk.isEmpty {
                    let t0 = Date()
                    _ = try m.forward(tokens: chunk, state: s, lastOnly: true)
                    chunkSeconds[i].append(Date().timeIntervalSince(t0))
                }
                let t0 = Date()
                for j in 0..<decodeTokens { _ = try m.forward(tokens: [(j * 7919) % (m.vocabSize - 2) + 2], state: s, lastOnly: true) }
                seconds[i].append(Date().timeIntervalSince(t0) / Double(decodeTokens))
            }
        }
        let median = seconds.map { $0.sorted()[$0.count / 2] }
        let chunkMedian = chunkSeconds.map { $0.isEmpty ? 0 : $0.sorted()[$0.count / 2] }
        for (i, n) in ns.enumerated() {
            let rate = 1 / median[i], ratio = median[0] / median[i]
            emit(options.json, [
                "benchmark": "decode-depth", "depth": n, "threads": KernelThreads.count, "kv_cache_dtype": options.kvCacheDType.rawValue,
                "decode_tokens_per_second": rate, "ratio_to_first": ratio,
                "prefill_chunk": prefillChunk, "prefill_tokens_per_second": prefillChunk == 0 ? 0 : Double(prefillChunk) / chunkMedian[i],
            ], text: String(
                format: "%8d tokens of context: decode %.1f tok/s (median of %d repeats: %@), %.2fx of depth %d%@",
                n, rate, rounds, seconds[i].map { String(format: "%.1f", 1 / $0) }.joined(separator: " "), ratio, ns[0],
                prefillChunk == 0 ? "" : String(format: "; a %d-token prefill chunk %.0f tok/s", prefillChunk, Double(prefillChunk) / chunkMedian[i])))
        }
    }
}
