// ContextBench.swift: `dsv4 bench context`, the context-length curve through the engine:
// chunked prefill into the paged cache, then decode at that depth, one length after another.
import ArgumentParser
import DeepSeekV4
import Engine
import Foundation
import PagedCache
import Tensors

struct ContextBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "context",
        abstract: "Prefill seconds and tok/s, decode tok/s at depth, peak RSS and cache bytes for each prompt length.")

    @Option(help: "Model folder.") var model: String
    @Option(help: "Prompt lengths, comma separated (e.g. 4096,65536,1048576).") var lengths = "4096,65536"
    @Option(name: .customLong("decode-tokens"), help: "Tokens decoded after each prompt.") var decodeTokens = 16
    @Option(name: .customLong("max-num-batched-tokens"), help: "Prefill chunk: tokens computed per engine step (serve's default).")
    var chunk = 512
    @Option(name: .customLong("kv-cache-memory"), help: "Cache budget in bytes (serve's default; boundary snapshots fill what pages leave).")
    var cacheBytes = 2 << 30
    @Option(name: .customLong("kv-cache-dtype"), help: kvCacheDTypeHelp)
    var kvCacheDType: KVCacheDType = .f32
    @Option(help: "Kernel threads (default: $DSV4_THREADS, else all CPUs).") var threads: Int?
    @Flag(help: "Print prefill progress on stderr.") var progress = false
    @Flag(help: "One JSON object per length on stdout.") var json = false

    func run() throws {
        let counts = lengths.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ ($0 ?? 0) > 0 }) else { fail("--lengths: positive integers separated by commas, got \"\(lengths)\"") }
        guard decodeTokens >= 2, chunk >= 1 else { fail("--decode-tokens must be >= 2, --max-num-batched-tokens positive") }
        if let problem = ProcessMemory.cacheBudgetProblem(cacheBytes) { fail(problem) }
        KernelThreads.start(count: threads)
        let m: DeepSeekV4Model
        do { m = try DeepSeekV4Model(directory: model, kvCacheDType: kvCacheDType) } catch { fail("\(error)") }
        for n in counts.map({ $0! }) {
            guard n + decodeTokens <= m.maxPositions else { fail("length \(n) + \(decodeTokens) decode tokens exceeds the model's \(m.maxPositions) positions") }
            let r = try measure(m, length: n)
            emit(json, [
                "benchmark": "context", "prompt_tokens": n, "threads": KernelThreads.count, "chunk": chunk,
                "prefill_seconds": r.prefillSeconds, "prefill_tokens_per_second": Double(n) / r.prefillSeconds,
                "decode_tokens_per_second": r.decodeRate, "peak_rss_bytes": r.peakRSS, "cache_bytes": r.cacheBytes,
                "cache_page_bytes": r.pageBytes, "cache_bytes_per_token": Double(r.pageBytes) / Double(n),
            ], text: String(
                format: "%8d tokens: prefill %.2f s (%.0f tok/s), decode %.1f tok/s at depth, peak RSS %.0f MB, cache %.0f MB (history pages %.0f MB, %.0f B/token)",
                n, r.prefillSeconds, Double(n) / r.prefillSeconds, r.decodeRate, Double(r.peakRSS) / 1e6, Double(r.cacheBytes) / 1e6,
                Double(r.pageBytes) / 1e6, Double(r.pageBytes) / Double(n)))
        }
    }

    struct Result {
        var prefillSeconds = 0.0
        var decodeRate = 0.0
        var peakRSS = 0
        var cacheBytes = 0
        var pageBytes = 0
    }

    /// One request of `length` random token ids (greedy, EOS ignored) through a fresh engine.
    func measure(_ m: DeepSeekV4Model, length: Int) throws -> Result {
        let core = EngineCore(model: m, configuration: EngineConfiguration(cacheBytes: cacheBytes, tokenBudget: chunk, maxRunning: 1))
        var p = SamplingParameters()
        p.temperature = 0
        p.maxTokens = decodeTokens
        p.ignoreEOS = true
        var rng: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(length)
        let prompt = (0..<length).map { _ in
            rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(rng >> 33) % (m.vocabSize - 2) + 2
        }
        do { _ = try core.add(prompt: prompt, parameters: p) } catch { fail("length \(length): \(error)") }
        var r = Result()
        let start = Date()
        var tokens = 0
        var lastReport = start
        while tokens == 0 && core.hasWork {
            for (_, e) in core.step() {
                switch e {
                case .token: tokens += 1
                case .failed(let err): fail("length \(length): \(err)")
                default: break
                }
            }
            if progress, Date().timeIntervalSince(lastReport) > 10 {
                lastReport = Date()
                let done = core.counters.computedTokens
                FileHandle.standardError.write(Data(String(
                    format: "  %d / %d tokens, %.0f s, %.0f tok/s\n", done, length, lastReport.timeIntervalSince(start),
                    Double(done) / lastReport.timeIntervalSince(start)).utf8))
            }
        }
        r.prefillSeconds = Date().timeIntervalSince(start)
        let usage = core.cache.usage
        r.cacheBytes = usage.usedBytes
        r.pageBytes = usage.bytesByBlockKind[.page] ?? 0
        let decodeStart = Date()
        var decoded = 0
        while core.hasWork {
            for (_, e) in core.step() { if case .token = e { decoded += 1 } }
        }
        r.decodeRate = Double(decoded) / Date().timeIntervalSince(decodeStart)
        r.peakRSS = ProcessMemory.status()?["VmHWM"] ?? 0
        return r
    }
}
