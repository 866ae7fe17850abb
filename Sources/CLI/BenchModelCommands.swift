// BenchModelCommands.swift: `dsv4 bench decode|prefill|kernels`, each judged against a
// ceiling (DRAM read bandwidth, fp32 FMA peak) measured in the same run.
import ArgumentParser
import CKernels
import DeepSeekV4
import Foundation
import Tensors

/// Machine ceilings, measured now.
struct Ceilings {
    /// Read bandwidth of all pool threads, GB/s.
    let bandwidthGBps: Double
    /// fp32 FMA peak of all pool threads, GFLOP/s.
    let peakGFLOPs: Double

    static func measure(bandwidth: Bool = true, flops: Bool = true) -> Ceilings {
        var bw = 0.0
        if bandwidth {
            let floats = 256 << 20 / 4  // 256 MB, far beyond the caches
            let p = UnsafeMutableRawPointer.allocate(byteCount: floats * 4, alignment: 64).bindMemory(to: Float.self, capacity: floats)
            p.initialize(repeating: 1, count: floats)
            bw = ck_bench_read_gbps(p, floats, 9)
            p.deallocate()
        }
        let fl = flops ? ck_bench_fma_gflops(Int32(KernelThreads.count), 20_000_000) : 0
        return Ceilings(bandwidthGBps: bw, peakGFLOPs: fl)
    }
}

/// Options shared by the model benchmarks.
struct BenchModelOptions: ParsableArguments {
    @Option(help: "Model folder.") var model: String
    @Option(help: "Kernel threads (default: $DSV4_THREADS, else all CPUs).") var threads: Int?
    @Option(help: "Repeats; the median is reported.") var repeats = 3
    @Option(name: .customLong("kv-cache-dtype"), help: kvCacheDTypeHelp)
    var kvCacheDType: KVCacheDType = .f32
    @Flag(help: "One JSON object on stdout.") var json = false

    func load() -> DeepSeekV4Model {
        KernelThreads.start(count: threads)
        do { return try DeepSeekV4Model(directory: model, kvCacheDType: kvCacheDType) } catch { fail("\(error)") }
    }
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

/// Prints `fields` as one JSON object, or `text`.
func emit(_ json: Bool, _ fields: KeyValuePairs<String, Any>, text: String) {
    guard json else {
        print(text)
        return
    }
    let body = fields.map { k, v in
        let value: String
        switch v {
        case let d as Double: value = d.isFinite ? String(format: "%.6g", d) : "null"
        case let i as Int: value = "\(i)"
        default: value = "\"\(v)\""
        }
        return "\"\(k)\":\(value)"
    }.joined(separator: ",")
    print("{\(body)}")
}

/// Single-stream decode against the memory roofline.
struct DecodeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Single-stream decode tokens/s, weight bytes per token, and the fraction of measured DRAM bandwidth.")
    @OptionGroup var options: BenchModelOptions
    @Option(name: .customLong("prompt-tokens")) var promptTokens = 32
    @Option(name: .customLong("decode-tokens")) var decodeTokens = 32
    @OptionGroup var parallel: ExpertParallelOptions

    func run() throws {
        _ = ExpertParallelOptions.world  // under mpirun, MPI starts before the load
        let m = options.load()
        let executor = parallel.attach(to: m, kvCacheDType: options.kvCacheDType)
        let traffic = m.weightTraffic
        // This machine's bandwidth moves from minute to minute: each repeat is judged against
        // the read bandwidth measured right before and right after it.
        let probe = BandwidthProbe()
        var rates: [Double] = []
        var ceilings: [Double] = []
        var fractions: [Double] = []
        for r in 0..<max(options.repeats, 1) {
            let state = m.makeState()
            let prompt = (0..<promptTokens).map { ($0 * 7919 + r * 31) % (m.vocabSize - 2) + 2 }
            var logits = try m.forward(tokens: prompt, state: state, lastOnly: true)
            let before = probe.measure()
            let start = Date()
            for _ in 0..<decodeTokens {
                let next = logits.indices.max { logits[$0] < logits[$1] }!
                logits = try m.forward(tokens: [next], state: state, lastOnly: true)
            }
            let rate = Double(decodeTokens) / Date().timeIntervalSince(start)
            let ceiling = (before + probe.measure()) / 2
            rates.append(rate)
            ceilings.append(ceiling)
            fractions.append(rate * Double(traffic.activeBytesPerToken) / 1e9 / ceiling)
        }
        let tps = median(rates)
        let bandwidth = median(ceilings)
        let fraction = median(fractions)
        let achieved = tps * Double(traffic.activeBytesPerToken) / 1e9
        let text = String(
            format: "decode: %.2f tok/s, %.1f MB of weights per token, %.2f GB/s; %.0f%% of the bandwidth measured around each repeat (median %.2f GB/s), %d threads",
            tps, Double(traffic.activeBytesPerToken) / 1e6, achieved, 100 * fraction, bandwidth, KernelThreads.count)
        if let executor {
            try ExpertParallelBench(executor: executor, waves: parallel.expertWaves, json: options.json).decode(
                model: m, promptTokens: promptTokens, decodeTokens: decodeTokens, rounds: options.repeats)
        }
        guard ExpertParallelOptions.isIORank else { return }
        emit(options.json, [
            "benchmark": "decode", "threads": KernelThreads.count, "tokens_per_second": tps,
            "bytes_per_token": traffic.activeBytesPerToken, "achieved_gbps": achieved,
            "bandwidth_gbps": bandwidth, "roofline_fraction": fraction,
        ], text: text)
    }
}

/// The read bandwidth of all kernel threads over a 256 MB buffer (median of 5 passes).
final class BandwidthProbe {
    private let floats = 256 << 20 / 4
    private let buffer: UnsafeMutablePointer<Float>

    init() {
        buffer = UnsafeMutableRawPointer.allocate(byteCount: floats * 4, alignment: 64).bindMemory(to: Float.self, capacity: floats)
        buffer.initialize(repeating: 1, count: floats)
    }

    deinit { buffer.deallocate() }

    func measure() -> Double { ck_bench_read_gbps(buffer, floats, 5) }
}

/// One prefill pass against the FMA peak.
struct PrefillBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prefill", abstract: "Prefill tokens/s and matrix GFLOP/s against the measured fp32 FMA peak.")
    @OptionGroup var options: BenchModelOptions
    @Option(name: .customLong("prompt-tokens")) var promptTokens = 512
    @OptionGroup var parallel: ExpertParallelOptions

    func run() throws {
        _ = ExpertParallelOptions.world  // under mpirun, MPI starts before the load
        let m = options.load()
        let executor = parallel.attach(to: m, kvCacheDType: options.kvCacheDType)
        let traffic = m.weightTraffic
        // One untimed pass first: a cold page cache (another model read since) would otherwise
        // put disk reads into the first repeat.
        _ = try m.forward(tokens: (0..<promptTokens).map { ($0 * 7919 + 17) % (m.vocabSize - 2) + 2 }, state: m.makeState(), lastOnly: true)
        var times: [Double] = []
        for r in 0..<max(options.repeats, 1) {
            let prompt = (0..<promptTokens).map { ($0 * 7919 + r * 31) % (m.vocabSize - 2) + 2 }
            let start = Date()
            _ = try m.forward(tokens: prompt, state: m.makeState(), lastOnly: true)
            times.append(Date().timeIntervalSince(start))
        }
        let t = median(times)
        // Logits of the last row only: the output head runs once, the rest once per token.
        let flops = Double(traffic.matrixFlopsPerToken - traffic.headFlopsPerToken) * Double(promptTokens)
            + Double(traffic.headFlopsPerToken)
        let gflops = flops / t / 1e9
        if let executor {
            try ExpertParallelBench(executor: executor, waves: parallel.expertWaves, json: options.json).prefill(
                model: m, promptTokens: promptTokens, rounds: options.repeats)
        }
        guard ExpertParallelOptions.isIORank else { return }
        let ceilings = Ceilings.measure(bandwidth: false)
        let text = String(
            format: "prefill %d tokens: %.3f s = %.1f tok/s, %.1f GFLOP/s in matrices of %.1f measured fp32 peak (%.0f%%), %d threads",
            promptTokens, t, Double(promptTokens) / t, gflops, ceilings.peakGFLOPs, 100 * gflops / ceilings.peakGFLOPs, KernelThreads.count)
        emit(options.json, [
            "benchmark": "prefill", "threads": KernelThreads.count, "prompt_tokens": promptTokens,
            "tokens_per_second": Double(promptTokens) / t, "gflops": gflops, "peak_gflops": ceilings.peakGFLOPs,
            "peak_fraction": gflops / ceilings.peakGFLOPs,
        ], text: text)
    }
}

/// The kernels alone.
struct KernelsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels", abstract: "Bandwidth, FMA peak, and the matrix kernels on BF16 weights.")
    @Option(help: "Kernel threads.") var threads: Int?
    @Option(help: "Weight matrix shape ROWSxCOLS.") var shape = "4096x4096"
    @Flag var json = false

    func run() throws {
        KernelThreads.start(count: threads)
        let ceilings = Ceilings.measure()
        let dims = shape.split(separator: "x").compactMap { Int($0) }
        guard dims.count == 2, dims[0] > 0, dims[1] > 0 else { fail("--shape must be ROWSxCOLS, got \(shape)") }
        let (n, k) = (dims[0], dims[1])
        let bits = (0..<(n * k)).map { UInt16(truncatingIfNeeded: 0x3C00 &+ ($0 % 509)) }
        var matvecGBps = 0.0
        var gemmGFLOPs = 0.0
        bits.withUnsafeBytes { raw in
            let w = WeightMatrix(rows: n, cols: k, type: .bf16, base: raw.baseAddress!, owner: nil)
            let x = (0..<(512 * k)).map { Float($0 % 13) * 0.01 }
            let x1 = Array(x[0..<k])
            // Many matrices in turn, as decode sees them (not one matrix hot in cache).
            let copies = max(1, (512 << 20) / w.byteCount)
            let big = [UInt16](repeating: 0x3C00, count: copies * n * k)
            big.withUnsafeBytes { all in
                var y = [Float](repeating: 0, count: n)
                for _ in 0..<3 {
                    let s = Date()
                    for c in 0..<copies {
                        let wc = WeightMatrix(rows: n, cols: k, type: .bf16, base: all.baseAddress! + c * w.byteCount, owner: nil)
                        x1.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { wc.apply(xp.baseAddress!, ldx: k, tokenCount: 1, into: $0.baseAddress!, ldy: n) } }
                    }
                    matvecGBps = max(matvecGBps, Double(copies * w.byteCount) / Date().timeIntervalSince(s) / 1e9)
                }
            }
            for _ in 0..<3 {
                let s = Date()
                _ = w.apply(x, tokenCount: 512)
                gemmGFLOPs = max(gemmGFLOPs, 2.0 * 512 * Double(n * k) / Date().timeIntervalSince(s) / 1e9)
            }
        }
        let text = String(
            format: "threads %d: read bandwidth %.2f GB/s, fp32 FMA peak %.1f GFLOP/s\nbf16 matvec %@: %.2f GB/s (%.0f%% of bandwidth)\nbf16 matmul 512x%@: %.1f GFLOP/s (%.0f%% of peak)",
            KernelThreads.count, ceilings.bandwidthGBps, ceilings.peakGFLOPs, shape, matvecGBps, 100 * matvecGBps / ceilings.bandwidthGBps,
            shape, gemmGFLOPs, 100 * gemmGFLOPs / ceilings.peakGFLOPs)
        emit(json, [
            "benchmark": "kernels", "threads": KernelThreads.count, "bandwidth_gbps": ceilings.bandwidthGBps,
            "peak_gflops": ceilings.peakGFLOPs, "matvec_bf16_gbps": matvecGBps,
            "matvec_roofline_fraction": matvecGBps / ceilings.bandwidthGBps, "matmul_bf16_512_gflops": gemmGFLOPs,
            "matmul_peak_fraction": gemmGFLOPs / ceilings.peakGFLOPs,
        ], text: text)
    }
}
