// ExpertParallelBench.swift: under mpirun, `dsv4 bench decode` also decodes with one wave and
// with the pipelined waves in the same run, and reports per MoE layer the bytes each rank
// sends and receives, the communication time, the part of it left exposed (blocked in
// MPI_Wait after the last wave), and the fraction the waves hid relative to one wave.
import DeepSeekV4
import ExpertParallel
import Foundation

struct ExpertParallelBench {
    let executor: ShardedExpertExecutor
    let waves: Int
    let json: Bool

    /// Runs `pass` with one wave and with up to `waves`, alternating, `rounds` times after one
    /// warm-up round (not counted: it faults in the pages). `pass` resets the executor's stats
    /// where its measured part begins and returns the tokens it measured. Every rank runs the
    /// same passes (they are collective); rank 0 prints, with `label` (decode, prefill).
    func run(label: String, rounds: Int, pass: () throws -> Int) throws {
        var results: [Int: (stats: [LayerCommStats], seconds: Double, tokens: Int)] = [:]
        for round in 0...max(rounds, 1) {
            let order = waves == 1 ? [1] : round % 2 == 0 ? [1, waves] : [waves, 1]
            for w in order {
                executor.maxWaves = w
                let start = Date()
                let tokens = try pass()
                guard round > 0 else { continue }
                let seconds = Date().timeIntervalSince(start)
                let before = results[w] ?? (Array(repeating: LayerCommStats(), count: executor.stats.count), 0, 0)
                results[w] = (zip(before.stats, executor.stats).map { $0 + $1 }, before.seconds + seconds, before.tokens + tokens)
            }
        }
        executor.maxWaves = waves
        // Every rank: what it touched of its own experts and of the others' (page-table bytes).
        if let r = executor.residentExpertBytes() {
            FileHandle.standardError.write(Data(String(
                format: "dsv4: rank %d/%d: resident routed-expert bytes: %.2f MB own (of %.2f MB owned), %.2f MB of other ranks' experts\n",
                executor.world.rank, executor.world.size, Double(r.own) / 1e6, Double(executor.ownedExpertBytes) / 1e6,
                Double(r.others) / 1e6).utf8))
        }
        executor.world.barrier()
        guard executor.world.rank == 0, let one = results[1], let piped = results[waves] else { return }
        let world = executor.world
        var lines: [String] = []
        var sum = (one: LayerCommStats(), piped: LayerCommStats())
        for (l, (a, b)) in zip(one.stats, piped.stats).enumerated() where b.calls > 0 {
            sum = (sum.one + a, sum.piped + b)
            let n = Double(b.calls), m = Double(max(a.calls, 1))
            lines.append(String(
                format: "  layer %2d: %8.0f B sent, %8.0f B received per pass in %.1f waves (one wave: %8.0f B); wait %7.1f µs (one wave %7.1f); unhidden communication %6.1f µs (one wave %6.1f): %3.0f%% hidden",
                l, Double(b.bytesSent) / n, Double(b.bytesReceived) / n, Double(b.waves) / n, Double(a.bytesReceived) / m,
                1e6 * b.exposedSeconds / n, 1e6 * a.exposedSeconds / m, 1e6 * b.unhiddenSeconds / n, 1e6 * a.unhiddenSeconds / m,
                100 * Self.hidden(a, b)))
        }
        let hidden = Self.hidden(sum.one, sum.piped)
        let tpsOne = Double(one.tokens) / one.seconds, tpsPiped = Double(piped.tokens) / piped.seconds
        if json {
            print("{\"benchmark\":\"\(label)-expert-parallel\",\"ranks\":\(world.size),\"waves\":\(waves),"
                + String(format: "\"tokens_per_second_one_wave\":%.4g,\"tokens_per_second_waves\":%.4g,", tpsOne, tpsPiped)
                + String(format: "\"wait_seconds_one_wave\":%.6g,\"wait_seconds_waves\":%.6g,", sum.one.exposedSeconds, sum.piped.exposedSeconds)
                + String(format: "\"unhidden_seconds_one_wave\":%.6g,\"unhidden_seconds_waves\":%.6g,\"hidden_fraction\":%.4g}",
                         sum.one.unhiddenSeconds, sum.piped.unhiddenSeconds, hidden))
        } else {
            print(String(
                format: "%@ over %d ranks: one wave %.2f tok/s, up to %d waves %.2f tok/s; MoE wait %.3f s vs %.3f s; communication left unhidden %.4f s (one wave) vs %.4f s (waves): %.0f%% hidden",
                label, world.size, tpsOne, waves, tpsPiped, sum.one.exposedSeconds, sum.piped.exposedSeconds,
                sum.one.unhiddenSeconds, sum.piped.unhiddenSeconds, 100 * hidden))
            print(lines.joined(separator: "\n"))
        }
    }

    /// The share of one wave's unhidden communication that the waves hid.
    static func hidden(_ one: LayerCommStats, _ piped: LayerCommStats) -> Double {
        guard one.unhiddenSeconds > 0, one.calls > 0, piped.calls > 0 else { return 0 }
        return 1 - (piped.unhiddenSeconds / Double(piped.calls)) / (one.unhiddenSeconds / Double(one.calls))
    }

    /// Greedy decode of `decodeTokens` after a fixed prompt; the decode steps are measured.
    func decode(model m: DeepSeekV4Model, promptTokens: Int, decodeTokens: Int, rounds: Int) throws {
        let prompt = (0..<promptTokens).map { ($0 * 7919 + 17) % (m.vocabSize - 2) + 2 }
        try run(label: "decode", rounds: rounds) {
            let state = m.makeState()
            var logits = try m.forward(tokens: prompt, state: state, lastOnly: true)
            executor.resetStats()
            for _ in 0..<decodeTokens {
                let next = logits.indices.max { logits[$0] < logits[$1] }!
                logits = try m.forward(tokens: [next], state: state, lastOnly: true)
            }
            return decodeTokens
        }
    }

    /// One prefill pass of `promptTokens`.
    func prefill(model m: DeepSeekV4Model, promptTokens: Int, rounds: Int) throws {
        let prompt = (0..<promptTokens).map { ($0 * 7919 + 17) % (m.vocabSize - 2) + 2 }
        try run(label: "prefill", rounds: rounds) {
            executor.resetStats()
            _ = try m.forward(tokens: prompt, state: m.makeState(), lastOnly: true)
            return promptTokens
        }
    }
}
