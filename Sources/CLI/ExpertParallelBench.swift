// ExpertParallelBench.swift: under mpirun, `dsv4 bench decode` also decodes with one wave, with
// one wave and the shared expert computed while it travels, and with the pipeline (waves, shared
// expert alongside the last) in the same run, and reports per MoE layer the bytes each rank
// sends and receives, the communication time, the part of it left exposed (blocked in
// MPI_Wait after the last wave), and the fraction hidden relative to one plain wave.
import DeepSeekV4
import ExpertParallel
import Foundation

struct ExpertParallelBench {
    let executor: ShardedExpertExecutor
    let waves: Int
    let json: Bool

    /// One way of running the MoE layers: the most waves, and whether the shared expert runs
    /// while the last wave's exchange travels.
    struct Mode: Hashable {
        var waves: Int
        var alongside: Bool
    }

    /// A mode's measurements, summed over rounds.
    struct Tally {
        var stats: [LayerCommStats]
        /// `[layer]` seconds of communication on the critical path (`criticalNanoseconds`).
        var critical: [Double]
        var seconds = 0.0
        var tokens = 0
    }

    /// `[layer]` seconds of communication on the critical path of the calls since the last
    /// reset, from every rank's marks (collective).
    func gatherCritical() -> [Double] {
        let marks = executor.callMarks
        let flat = marks.flatMap { $0.flatMap { [Int64(bitPattern: $0.ready), Int64(bitPattern: $0.done)] } }
        let all = executor.world.allGather(flat)
        precondition(all.allSatisfy { $0.count == flat.count }, "ranks made different MoE layer calls")
        var out: [Double] = []
        var o = 0
        for layer in marks {
            var sum = 0.0
            for _ in layer {
                let ready = all.map { UInt64(bitPattern: $0[o]) }, done = all.map { UInt64(bitPattern: $0[o + 1]) }
                sum += Double(ShardedExpertExecutor.criticalNanoseconds(ready: ready, done: done)) / 1e9
                o += 2
            }
            out.append(sum)
        }
        return out
    }

    /// Runs `pass` in three modes — one wave with the shared expert after the exchange (the
    /// unpipelined baseline), one wave with the shared expert alongside it, and up to `waves`
    /// waves with the shared expert alongside (the pipeline) — in rotating order, `rounds`
    /// times after one warm-up round (not counted: it faults in the pages). `pass` resets the
    /// executor's stats where its measured part begins and returns the tokens it measured.
    /// Every rank runs the same passes (they are collective); rank 0 prints, with `label`.
    func run(label: String, rounds: Int, pass: () throws -> Int) throws {
        let baseline = Mode(waves: 1, alongside: false), single = Mode(waves: 1, alongside: true)
        let piped = Mode(waves: waves, alongside: true)
        let modes = waves == 1 ? [baseline, single] : [baseline, single, piped]
        var results: [Mode: Tally] = [:]
        for round in 0...max(rounds, 1) {
            for i in modes.indices {
                let mode = modes[(i + round) % modes.count]
                executor.maxWaves = mode.waves
                executor.overlapsAlongside = mode.alongside
                let start = Date()
                let tokens = try pass()
                guard round > 0 else { continue }
                let seconds = Date().timeIntervalSince(start)
                let critical = gatherCritical()
                let L = executor.stats.count
                var t = results[mode] ?? Tally(stats: Array(repeating: LayerCommStats(), count: L), critical: Array(repeating: 0, count: L))
                t.stats = zip(t.stats, executor.stats).map { $0 + $1 }
                t.critical = zip(t.critical, critical).map { $0 + $1 }
                t.seconds += seconds
                t.tokens += tokens
                results[mode] = t
            }
        }
        executor.maxWaves = waves
        executor.overlapsAlongside = true
        // Every rank: what it touched of its own experts and of the others' (page-table bytes).
        if let r = executor.residentExpertBytes() {
            FileHandle.standardError.write(Data(String(
                format: "dsv4: rank %d/%d: resident routed-expert bytes: %.2f MB own (of %.2f MB owned), %.2f MB of other ranks' experts\n",
                executor.world.rank, executor.world.size, Double(r.own) / 1e6, Double(executor.ownedExpertBytes) / 1e6,
                Double(r.others) / 1e6).utf8))
        }
        executor.world.barrier()
        guard executor.world.rank == 0, let one = results[baseline], let alone = results[single], let pipe = results[piped]
        else { return }
        report(label: label, one: one, single: alone, piped: pipe)
    }

    /// Rank 0's report: per MoE layer and in total, the communication on the critical path and
    /// rank 0's unhidden wait, for the pipeline (waves, shared expert alongside) and for one wave
    /// with the shared expert alongside, each against one plain wave.
    private func report(label: String, one: Tally, single: Tally, piped: Tally) {
        func perCall(_ seconds: Double, _ s: LayerCommStats) -> Double { 1e6 * seconds / Double(max(s.calls, 1)) }
        func hidden(_ base: Double, _ x: Double) -> Double { base > 0 ? 1 - x / base : 0 }
        var lines: [String] = []
        for (l, a) in one.stats.enumerated() where piped.stats[l].calls > 0 {
            let b = piped.stats[l], c = single.stats[l]
            let crit = (one: perCall(one.critical[l], a), single: perCall(single.critical[l], c), piped: perCall(piped.critical[l], b))
            lines.append(String(
                format: "  layer %2d: %8.0f B sent, %8.0f B received per pass in %.1f waves (one wave: %8.0f B); wait %7.1f µs (one wave %7.1f); on the critical path %6.1f µs (one wave %6.1f, one wave with the shared expert alongside %6.1f): %3.0f%% hidden (%3.0f%%); rank 0's unhidden wait %6.1f µs (one wave %6.1f)",
                l, Double(b.bytesSent) / Double(b.calls), Double(b.bytesReceived) / Double(b.calls), Double(b.waves) / Double(b.calls),
                Double(a.bytesReceived) / Double(max(a.calls, 1)), perCall(b.exposedSeconds, b), perCall(a.exposedSeconds, a),
                crit.piped, crit.one, crit.single, 100 * hidden(crit.one, crit.piped), 100 * hidden(crit.one, crit.single),
                perCall(b.unhiddenSeconds, b), perCall(a.unhiddenSeconds, a)))
        }
        let total = { (t: Tally) in (critical: t.critical.reduce(0, +), stats: t.stats.reduce(LayerCommStats(), +)) }
        let (o, s1, p) = (total(one), total(single), total(piped))
        let perCallCritical = { (t: (critical: Double, stats: LayerCommStats)) in t.critical / Double(max(t.stats.calls, 1)) }
        let hiddenPiped = hidden(perCallCritical(o), perCallCritical(p)), hiddenSingle = hidden(perCallCritical(o), perCallCritical(s1))
        let tps = (one: Double(one.tokens) / one.seconds, single: Double(single.tokens) / single.seconds,
                   piped: Double(piped.tokens) / piped.seconds)
        if json {
            print("{\"benchmark\":\"\(label)-expert-parallel\",\"ranks\":\(executor.world.size),\"waves\":\(waves),"
                + String(format: "\"tokens_per_second_one_wave\":%.4g,\"tokens_per_second_one_wave_alongside\":%.4g,\"tokens_per_second_waves\":%.4g,", tps.one, tps.single, tps.piped)
                + String(format: "\"wait_seconds_one_wave\":%.6g,\"wait_seconds_waves\":%.6g,", o.stats.exposedSeconds, p.stats.exposedSeconds)
                + String(format: "\"critical_seconds_one_wave\":%.6g,\"critical_seconds_one_wave_alongside\":%.6g,\"critical_seconds_waves\":%.6g,", o.critical, s1.critical, p.critical)
                + String(format: "\"unhidden_seconds_one_wave\":%.6g,\"unhidden_seconds_waves\":%.6g,", o.stats.unhiddenSeconds, p.stats.unhiddenSeconds)
                + String(format: "\"alongside_seconds_one_wave_alongside\":%.6g,\"alongside_seconds_waves\":%.6g,", s1.stats.alongsideSeconds, p.stats.alongsideSeconds)
                + String(format: "\"hidden_fraction\":%.4g,\"hidden_fraction_one_wave_alongside\":%.4g}", hiddenPiped, hiddenSingle))
        } else {
            print(String(
                format: "%@ over %d ranks: one wave %.2f tok/s, one wave with the shared expert alongside %.2f tok/s, up to %d waves with it %.2f tok/s; MoE wait %.3f s vs %.3f s; communication on the critical path %.4f s (one wave) vs %.4f s (one wave, shared expert alongside) vs %.4f s (waves): %.0f%% hidden (%.0f%% with one wave); rank 0's unhidden wait %.4f s vs %.4f s; rank 0's shared expert computed alongside the exchange %.4f s (one wave) / %.4f s (waves)",
                label, executor.world.size, tps.one, tps.single, waves, tps.piped, o.stats.exposedSeconds, p.stats.exposedSeconds,
                o.critical, s1.critical, p.critical, 100 * hiddenPiped, 100 * hiddenSingle, o.stats.unhiddenSeconds, p.stats.unhiddenSeconds,
                s1.stats.alongsideSeconds, p.stats.alongsideSeconds))
            print(lines.joined(separator: "\n"))
        }
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
