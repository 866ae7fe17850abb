// CacheDTypeBench.swift: `dsv4 bench cache-dtype`, what a lower-precision cache costs in
// accuracy and buys in bytes: one long prompt through the model with the cache stored as
// f32, bf16 and fp8, each compared with f32 (max |Δlogit| over the last rows, argmax
// agreement, and how many of the Lightning Indexer's top-k picks stay the same).
import ArgumentParser
import DeepSeekV4
import Foundation
import Tensors

struct CacheDTypeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache-dtype",
        abstract: "Accuracy and bytes of each --kv-cache-dtype against f32 on one long prompt.")

    @Option(help: "Model folder.") var model: String
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length (random token ids).") var promptTokens = 16384
    @Option(help: "Tokens per forward (prefill chunk).") var chunk = 512
    @Option(name: .customLong("compare-rows"), help: "Last prompt rows whose logits are compared.") var compareRows = 16
    @Option(help: "Kernel threads (default: $DSV4_THREADS, else all CPUs).") var threads: Int?
    @Flag(help: "One JSON object per dtype on stdout.") var json = false

    struct Run {
        var logits: [Float] = []
        /// Per CSA layer, each query's picks in order (k per query that selects; fewer are skipped).
        var picks: [Int: [[Int32]]] = [:]
        var seconds = 0.0
    }

    func run() throws {
        guard promptTokens >= 2, chunk >= 1, compareRows >= 1, compareRows <= min(promptTokens, chunk) else {
            fail("--prompt-tokens must be >= 2, --chunk >= 1, 1 <= --compare-rows <= min(prompt, chunk)")
        }
        KernelThreads.start(count: threads)
        var rng: UInt64 = 0x5EED_CAFE ^ UInt64(promptTokens)
        var reference: Run?
        for dtype in KVCacheDType.allCases {
            let m: DeepSeekV4Model
            do { m = try DeepSeekV4Model(directory: model, kvCacheDType: dtype) } catch { fail("\(error)") }
            if reference == nil {
                guard promptTokens <= m.maxPositions else { fail("--prompt-tokens exceeds the model's \(m.maxPositions) positions") }
            }
            rng = 0x5EED_CAFE ^ UInt64(promptTokens)
            let prompt = (0..<promptTokens).map { _ in
                rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Int(rng >> 33) % (m.vocabSize - 2) + 2
            }
            let r = try measure(m, prompt: prompt)
            let ref = reference ?? r
            if reference == nil { reference = r }
            report(dtype, m, r, ref)
        }
    }

    func measure(_ m: DeepSeekV4Model, prompt: [Int]) throws -> Run {
        var r = Run()
        let k = m.config.indexTopK
        m.indexerObserver = { layer, _, picks in
            for p in picks where p.count == k { r.picks[layer, default: []].append(p.map(Int32.init).sorted()) }
        }
        let state = m.makeState()
        let start = Date()
        var at = 0
        while at < prompt.count {
            let end = min(at + chunk, prompt.count)
            let out = try m.forward(tokens: Array(prompt[at..<end]), state: state)
            if end == prompt.count {
                let V = m.vocabSize
                r.logits = Array(out[((end - at - compareRows) * V)...])
            }
            at = end
        }
        r.seconds = Date().timeIntervalSince(start)
        m.indexerObserver = nil
        return r
    }

    func report(_ dtype: KVCacheDType, _ m: DeepSeekV4Model, _ r: Run, _ ref: Run) {
        var maxDelta: Float = 0
        for i in 0..<r.logits.count { maxDelta = max(maxDelta, abs(r.logits[i] - ref.logits[i])) }
        let V = m.vocabSize
        var sameArgmax = 0
        for row in 0..<compareRows {
            let a = r.logits[(row * V)..<((row + 1) * V)], b = ref.logits[(row * V)..<((row + 1) * V)]
            if a.indices.max(by: { a[$0] < a[$1] }) == b.indices.max(by: { b[$0] < b[$1] }) { sameArgmax += 1 }
        }
        var shared = 0, total = 0
        for (layer, queries) in ref.picks {
            let mine = r.picks[layer] ?? []
            for (q, p) in zip(queries, mine) {
                shared += Set(q).intersection(p).count
                total += q.count
            }
        }
        let overlap = total == 0 ? 1 : Double(shared) / Double(total)
        let perToken = m.config.cacheBytesPerToken(dtype: dtype)
        emit(json, [
            "benchmark": "cache-dtype", "kv_cache_dtype": dtype.rawValue, "prompt_tokens": promptTokens, "compare_rows": compareRows,
            "max_abs_logit_delta": Double(maxDelta), "argmax_agreement": Double(sameArgmax) / Double(compareRows),
            "topk_overlap": overlap, "cache_bytes_per_token": perToken, "prefill_seconds": r.seconds,
        ], text: String(
            format: "%@: max |Δlogit| %.3g over the last %d rows, argmax agrees %d/%d, indexer top-%d overlap %.4f, %.1f B/token, prefill %.1f s",
            dtype.rawValue, maxDelta, compareRows, sameArgmax, compareRows, m.config.indexTopK, overlap, perToken, r.seconds))
    }
}
