// CreateModelCommand.swift: `dsv4 create-model`, deterministic random weights for a config.
//
// Used by setup to build the bundled default model (no torch, nothing large in git), and by
// benchmarks for larger models of the same architecture.
import ArgumentParser
import Checkpoint
import DeepSeekV4
import Foundation
import Tensors

struct CreateModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-model",
        abstract: "Write a V4-architecture model with deterministic random weights for a config.json.")

    @Option(help: "The config.json to instantiate.")
    var config: String

    @Option(help: "Output folder (created); receives config.json and model.safetensors.")
    var output: String

    @Option(help: "Seed of the weight generator.")
    var seed: UInt64 = 0

    @Option(help: "Storage dtype of matrices and norms: bf16 | f32.")
    var dtype: String = "bf16"

    @Option(help: "none | fp8: store as DeepSeek's release does (FP8 E4M3 + 128×128 E8M0 scales, FP4 routed experts + per-32 scales), sharded with an index.")
    var quantize: String = "none"

    @Option(help: "With --quantize fp8: target shard size in MiB.")
    var shardSizeMib: Int = 256

    func run() throws {
        guard dtype == "bf16" || dtype == "f32" else { fail("--dtype must be bf16 or f32, got \(dtype)") }
        guard let data = FileManager.default.contents(atPath: config) else { fail("cannot read \(config)") }
        let c: DeepSeekV4Config
        do { c = try DeepSeekV4Config.decode(json: data) } catch { fail("\(config): \(error)") }
        do {
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        } catch { fail("cannot create \(output): \(error)") }

        guard quantize == "none" || quantize == "fp8" else { fail("--quantize must be none or fp8, got \(quantize)") }
        guard shardSizeMib > 0 else { fail("--shard-size-mib must be positive") }
        let quantized = quantize == "fp8"
        if quantized && c.hiddenSize % TensorStore.fp4Group != 0 || quantized && c.moeIntermediateSize % TensorStore.fp4Group != 0 {
            fail("--quantize fp8 needs hidden_size and moe_intermediate_size divisible by \(TensorStore.fp4Group) (FP4 scale groups)")
        }

        var rng = SplitMix64(seed: seed)
        let writer = ShardWriter(directory: output, shardBytes: quantized ? shardSizeMib << 20 : Int.max,
                                 metadata: ["format": "pt", "generator": "dsv4 create-model seed=\(seed) quantize=\(quantize)"])
        do {
            for entry in c.weightManifest() {
                for (name, blob) in makeTensors(entry, config: c, rng: &rng, quantized: quantized) {
                    try writer.add(name, blob)
                }
            }
            let files = try writer.finish()
            let dst = (output as NSString).appendingPathComponent("config.json")
            if FileManager.default.fileExists(atPath: dst) { try FileManager.default.removeItem(atPath: dst) }
            var outData = data
            if quantized, var obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] {
                obj["quantization_config"] = [
                    "activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "scale_fmt": "ue8m0",
                    "weight_block_size": [128, 128],
                ] as [String: Any]
                outData = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
            }
            try outData.write(to: URL(fileURLWithPath: dst))
            print("wrote \(files.count) file(s) to \(output): \(writer.totalBytes) bytes of tensors")
        } catch { fail("\(error)") }
        let (total, active) = c.parameterCounts
        print("\(total) parameters (\(active) active per token), seed \(seed)")
    }
}

extension CreateModelCommand {
    /// The stored tensor(s) of one manifest entry: the tensor, plus its `.scale` when quantized.
    func makeTensors(_ entry: ManifestEntry, config c: DeepSeekV4Config, rng: inout SplitMix64, quantized: Bool) -> [(String, TensorBlob)] {
        let n = entry.elementCount
        if entry.role == .hashTable {
            var ids = [Int64](repeating: 0, count: n)
            let k = entry.shape[1]
            for row in 0..<entry.shape[0] {
                var chosen: [Int64] = []
                while chosen.count < k {
                    let e = Int64(rng.next() % UInt64(c.routedExpertCount))
                    if !chosen.contains(e) { chosen.append(e) }
                }
                for j in 0..<k { ids[row * k + j] = chosen[j] }
            }
            return [(entry.name, TensorBlob(dtype: .i64, shape: entry.shape, bytes: ids.withUnsafeBufferPointer { Data(buffer: $0) }))]
        }
        let format = quantized ? entry.releasedFormat : .dense
        // Quantized models are for size and memory work: a cheaper normal (Irwin–Hall, 4 terms).
        let values: [Float] = (0..<n).map { _ in
            let g = format == .dense ? rng.normal() : rng.approximateNormal()
            switch entry.role {
            case .matrix: return g / Float(entry.shape[1]).squareRoot()
            case .normWeight: return 1 + 0.1 * g
            case .hcFn: return 0.02 * g
            case .hcBase, .routerBias, .ape: return 0.1 * g
            case .hcScale: return 1 + 0.1 * g
            case .sink: return g
            case .hashTable: return 0
            }
        }
        let scaleName = entry.name.hasSuffix(".weight") ? String(entry.name.dropLast(".weight".count)) + ".scale" : entry.name + ".scale"
        let (rows, cols) = (entry.shape[0], entry.shape.count > 1 ? entry.shape[1] : 1)
        switch format {
        case .fp8:
            let (codes, scales) = Quantizer.fp8Blocks(values, rows: rows, cols: cols)
            return [
                (entry.name, TensorBlob(dtype: .f8e4m3, shape: entry.shape, bytes: Data(codes))),
                (scaleName, TensorBlob(dtype: .f8e8m0, shape: [(rows + 127) / 128, (cols + 127) / 128], bytes: Data(scales))),
            ]
        case .fp4:
            let (packed, scales) = Quantizer.fp4Groups(values, rows: rows, cols: cols)
            return [
                (entry.name, TensorBlob(dtype: .i8, shape: [rows, cols / 2], bytes: Data(packed))),
                (scaleName, TensorBlob(dtype: .f8e8m0, shape: [rows, cols / TensorStore.fp4Group], bytes: Data(scales))),
            ]
        case .dense:
            // The release keeps hyper-connection, sink, ape and bias tensors in F32.
            let keepF32: Bool = switch entry.role {
            case .hcFn, .hcBase, .hcScale, .sink, .ape, .routerBias: true
            default: false
            }
            if (dtype == "bf16" || quantized) && !keepF32 {
                let bits = values.map(floatToBF16)
                return [(entry.name, TensorBlob(dtype: .bf16, shape: entry.shape, bytes: bits.withUnsafeBufferPointer { Data(buffer: $0) }))]
            }
            return [(entry.name, TensorBlob(shape: entry.shape, floats: values))]
        }
    }
}

/// Writes tensors into `model.safetensors`, or, with a finite shard size, into
/// `model-0000i-of-0000n.safetensors` shards plus `model.safetensors.index.json`.
final class ShardWriter {
    let directory: String
    let shardBytes: Int
    let metadata: [String: String]
    private var pending: [String: TensorBlob] = [:]
    private var pendingBytes = 0
    private var written: [(file: String, names: [String])] = []
    private(set) var totalBytes = 0

    init(directory: String, shardBytes: Int, metadata: [String: String]) {
        self.directory = directory
        self.shardBytes = shardBytes
        self.metadata = metadata
    }

    func add(_ name: String, _ blob: TensorBlob) throws {
        pending[name] = blob
        pendingBytes += blob.bytes.count
        totalBytes += blob.bytes.count
        if pendingBytes >= shardBytes { try flush() }
    }

    private func flush() throws {
        guard !pending.isEmpty else { return }
        let tmp = "shard-\(written.count + 1).tmp"
        try SafetensorsWriter.write(pending, metadata: metadata, to: (directory as NSString).appendingPathComponent(tmp))
        written.append((tmp, pending.keys.sorted()))
        pending = [:]
        pendingBytes = 0
    }

    /// Writes what is left, names the shards and writes the index; returns the file names.
    func finish() throws -> [String] {
        let fm = FileManager.default
        for stale in ["model.safetensors", "model.safetensors.index.json"] {
            let p = (directory as NSString).appendingPathComponent(stale)
            if fm.fileExists(atPath: p) { try fm.removeItem(atPath: p) }
        }
        if shardBytes == Int.max {
            try SafetensorsWriter.write(pending, metadata: metadata, to: (directory as NSString).appendingPathComponent("model.safetensors"))
            return ["model.safetensors"]
        }
        try flush()
        var map: [String: String] = [:]
        var names: [String] = []
        for (i, w) in written.enumerated() {
            let name = String(format: "model-%05d-of-%05d.safetensors", i + 1, written.count)
            let dst = (directory as NSString).appendingPathComponent(name)
            if fm.fileExists(atPath: dst) { try fm.removeItem(atPath: dst) }
            try fm.moveItem(atPath: (directory as NSString).appendingPathComponent(w.file), toPath: dst)
            for t in w.names { map[t] = name }
            names.append(name)
        }
        let index: [String: Any] = ["metadata": ["total_size": totalBytes], "weight_map": map]
        try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("model.safetensors.index.json")))
        return names
    }
}

/// SplitMix64: a small, fast, fully deterministic generator.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    mutating func uniform() -> Float { (Float(next() >> 40) + 0.5) / Float(1 << 24) }

    /// Approximately standard normal: the sum of four 16-bit uniforms, centred and scaled (Irwin–Hall).
    mutating func approximateNormal() -> Float {
        let r = next()
        var sum: Float = 0
        for i in 0..<4 { sum += Float((r >> (16 * UInt64(i))) & 0xFFFF) }
        return (sum / 65536 - 2) * 1.7320508
    }

    /// Standard normal (Box–Muller).
    mutating func normal() -> Float {
        let u1 = uniform(), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Float.pi * u2)
    }
}
