// InspectCommand.swift: `dsv4 inspect`, what a model folder holds and what this machine can do
// with it: config, layer schedule, parameters, bytes by dtype, cache bytes per token of
// context, resident memory after load, and the largest context that fits in free memory.
import ArgumentParser
import Checkpoint
import DeepSeekV4
import Foundation
import Tensors

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Summarise a model folder: config, layer schedule, parameters, dtypes, cache and memory figures.")

    @Option(help: "Model folder.")
    var model: String

    @Option(name: .customLong("kv-cache-dtype"), help: kvCacheDTypeHelp)
    var kvCacheDType: KVCacheDType = .f32

    @Flag(help: "Print a line per shard as it is mapped and verified (default: only on a terminal or for checkpoints of 1 GiB or more).")
    var progress = false

    func run() throws {
        let rssBefore = ProcessMemory.status()?["VmRSS"]
        let m: DeepSeekV4Model
        let started = Date()
        do { m = try DeepSeekV4Model(directory: model, kvCacheDType: kvCacheDType, progress: LoadProgressPrinter.callback(always: progress)) } catch { fail("\(error)") }
        let loadSeconds = Date().timeIntervalSince(started)
        let memAfter = ProcessMemory.status()
        let c = m.config
        let short: [AttentionKind: String] = [.sliding: "S", .csa: "C", .hca: "H"]
        print("model: \(model)")
        print("hidden \(c.hiddenSize), layers \(c.layerCount), heads \(c.headCount)×\(c.headDim) (rope \(c.ropeDim)), vocab \(c.vocabSize)")
        print("q lora \(c.qLoraRank), output groups \(c.outputGroups)×\(c.outputLoraRank), mHC \(c.hcMult) streams, max positions \(c.maxPositionEmbeddings)")
        print("experts: \(c.routedExpertCount) routed (top \(c.expertsPerToken)) + \(c.sharedExpertCount) shared, width \(c.moeIntermediateSize)")
        print("window \(c.slidingWindow), CSA ratio \(c.csaRatio) (indexer \(c.indexHeadCount)×\(c.indexHeadDim), top \(c.indexTopK)), HCA ratio \(c.hcaRatio)")
        print("attention schedule: " + c.attentionKinds.map { short[$0]! }.joined()
            + "  (S sliding \(c.attentionKinds.filter { $0 == .sliding }.count), C CSA \(c.attentionKinds.filter { $0 == .csa }.count), H HCA \(c.attentionKinds.filter { $0 == .hca }.count))")
        print("routing schedule:   " + c.routingKinds.map { $0 == .hash ? "h" : "s" }.joined()
            + "  (h hash \(c.routingKinds.filter { $0 == .hash }.count), s score \(c.routingKinds.filter { $0 == .score }.count))")
        let (total, active) = c.parameterCounts
        print("parameters: \(total) total, \(active) active per token (main model, without MTP)")

        print("checkpoint: \(m.store.files.count) file(s), \(formatBytes(Double(m.store.fileBytes))) (\(m.store.fileBytes) bytes)")
        let counts = Dictionary(grouping: m.store.names.compactMap { m.store.view($0) }, by: \.dtype).mapValues(\.count)
        for (dt, bytes) in m.store.bytesByDType.sorted(by: { $0.value > $1.value }) {
            let note: String = switch dt {
            case .f8e4m3: " (FP8 weights)"
            case .f8e8m0: " (block scales)"
            case .i8: " (packed FP4 experts, 2 values per byte)"
            default: ""
            }
            print("  \(dt.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(String(bytes).leftPad(14)) bytes  \(String(counts[dt] ?? 0).leftPad(6)) tensors\(note)")
        }
        let mtp = m.mtpTensors, extra = m.unknownTensors
        if !mtp.isEmpty { print("MTP block: \(mtp.count) tensors (recognised, not used by the main model)") }
        if !extra.isEmpty { print("unused tensors: \(extra.count) (e.g. \(extra.prefix(3).joined(separator: ", ")))") }
        print("kernels: \(KernelSelection.implementationName) (cpu: \(KernelSelection.cpuFeatures.joined(separator: " ")))")

        // Decode state per sequence (DecodeStateFootprint).
        let engine = c.decodeStateFootprint(elementBytes: 4)
        let bf16 = c.decodeStateFootprint(elementBytes: 2)
        let perToken = KVCacheDType.allCases.map { String(format: "%@ %.1f B", $0.rawValue, c.cacheBytesPerToken(dtype: $0)) }
        print(String(format: "cache per token of context (--kv-cache-dtype %@): %.1f B in history pages (%@)",
                     m.kvCacheDType.rawValue, c.cacheBytesPerToken(dtype: m.kvCacheDType), perToken.joined(separator: ", ")))
        print(String(format: "  the spec's count (entries + indexer keys, no page rounding): %.1f B in fp32, %.1f B in bf16", engine.bytesPerToken, bf16.bytesPerToken))
        print("cache constant part per sequence: \(formatBytes(Double(engine.constantBytes))) (fp32; bf16 windows: \(formatBytes(Double(bf16.constantBytes))))")
        print("cache at 1M tokens: \(formatBytes(engine.bytes(tokens: 1 << 20))) (fp32), \(formatBytes(bf16.bytes(tokens: 1 << 20))) (bf16)")

        if let memAfter, let rss = memAfter["VmRSS"] {
            var line = "resident memory after load: \(formatBytes(Double(rss)))"
            if let anon = memAfter["RssAnon"], let file = memAfter["RssFile"] {
                line += " (anonymous \(formatBytes(Double(anon))), file-backed \(formatBytes(Double(file))))"
            }
            if let rssBefore { line += ", of which \(formatBytes(Double(rss - rssBefore))) since start" }
            line += String(format: "; load took %.2f s", loadSeconds)
            print(line)
            print(String(format: "  = %.2f%% of the %@ checkpoint (weights stay memory-mapped, paged in on use)",
                         100 * Double(rss) / Double(max(m.store.fileBytes, 1)), formatBytes(Double(m.store.fileBytes))))
            if let mapped = ProcessMemory.residentBytes(ofMappedFiles: m.store.files.map(\.path)) {
                print("  checkpoint pages resident in this process: \(formatBytes(Double(mapped))) (the rest is code, libraries and decoded small tensors)")
            }
        }
        if let machine = ProcessMemory.machine(), let avail = machine["MemAvailable"] {
            // Weights not yet resident will need page cache too: reserve the file size.
            let resident = memAfter?["VmRSS"] ?? 0
            let forCache = avail - max(0, m.store.fileBytes - resident)
            let fits = engine.tokensFitting(bytes: forCache)
            let fitsBF16 = bf16.tokensFitting(bytes: forCache)
            print("memory available: \(formatBytes(Double(avail))) of \(formatBytes(Double(machine["MemTotal"] ?? 0))); "
                + "after paging in all weights \(formatBytes(Double(max(forCache, 0)))) remain for caches")
            print("largest context that fits: \(fits) tokens (fp32 cache), \(fitsBF16) tokens (bf16 cache); model maximum \(c.maxPositionEmbeddings)")
        }
    }
}

extension String {
    fileprivate func leftPad(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
