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

    /// Decodes `decodeTokens` greedy tokens after a prompt, once per wave setting; every rank
    /// runs the same passes (they are collective), rank 0 prints.
    func run(model m: DeepSeekV4Model, promptTokens: Int, decodeTokens: Int) throws {
        var results: [Int: (stats: [LayerCommStats], seconds: Double)] = [:]
        for w in Array(Set([1, waves])).sorted() {
            executor.maxWaves = w
            let state = m.makeState()
            let prompt = (0..<promptTokens).map { ($0 * 7919 + 17) % (m.vocabSize - 2) + 2 }
            var logits = try m.forward(tokens: prompt, state: state, lastOnly: true)
            executor.resetStats()
            let start = Date()
            for _ in 0..<decodeTokens {
                let next = logits.indices.max { logits[$0] < logits[$1] }!
                logits = try m.forward(tokens: [next], state: state, lastOnly: true)
            }
            results[w] = (executor.stats, Date().timeIntervalSince(start))
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
        var totalExposedOne = 0.0, totalExposedPiped = 0.0, totalComm = 0.0
        for (l, (a, b)) in zip(one.stats, piped.stats).enumerated() where b.calls > 0 {
            let n = Double(b.calls)
            totalExposedOne += a.exposedSeconds
            totalExposedPiped += b.exposedSeconds
            totalComm += b.commSeconds
            let hidden = a.exposedSeconds > 0 ? 1 - b.exposedSeconds / a.exposedSeconds : 0
            lines.append(String(
                format: "  layer %2d: %6.0f B sent, %6.0f B received per token in %.1f waves; comm %.1f µs, exposed %.1f µs (one wave: %.1f µs); hidden %.0f%%",
                l, Double(b.bytesSent) / n, Double(b.bytesReceived) / n, Double(b.waves) / n, 1e6 * b.commSeconds / n,
                1e6 * b.exposedSeconds / n, 1e6 * a.exposedSeconds / Double(max(a.calls, 1)), 100 * hidden))
        }
        let hidden = totalExposedOne > 0 ? 1 - totalExposedPiped / totalExposedOne : 0
        let tpsOne = Double(decodeTokens) / one.seconds, tpsPiped = Double(decodeTokens) / piped.seconds
        if json {
            print("{\"benchmark\":\"decode-expert-parallel\",\"ranks\":\(world.size),\"waves\":\(waves),"
                + String(format: "\"tokens_per_second_one_wave\":%.4g,\"tokens_per_second_waves\":%.4g,", tpsOne, tpsPiped)
                + String(format: "\"exposed_seconds_one_wave\":%.6g,\"exposed_seconds_waves\":%.6g,\"comm_seconds_waves\":%.6g,\"hidden_fraction\":%.4g}",
                         totalExposedOne, totalExposedPiped, totalComm, hidden))
        } else {
            print(String(format: "expert parallel: %d ranks; one wave %.2f tok/s, up to %d waves %.2f tok/s; MoE communication exposed %.3f s (one wave) vs %.3f s (waves): %.0f%% hidden",
                         world.size, tpsOne, waves, tpsPiped, totalExposedOne, totalExposedPiped, 100 * hidden))
            print(lines.joined(separator: "\n"))
        }
    }
}
