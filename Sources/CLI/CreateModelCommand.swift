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

    func run() throws {
        guard dtype == "bf16" || dtype == "f32" else { fail("--dtype must be bf16 or f32, got \(dtype)") }
        guard let data = FileManager.default.contents(atPath: config) else { fail("cannot read \(config)") }
        let c: DeepSeekV4Config
        do { c = try DeepSeekV4Config.decode(json: data) } catch { fail("\(config): \(error)") }
        do {
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        } catch { fail("cannot create \(output): \(error)") }

        var rng = SplitMix64(seed: seed)
        var tensors: [String: TensorBlob] = [:]
        for entry in c.weightManifest() {
            let n = entry.elementCount
            switch entry.role {
            case .hashTable:
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
                tensors[entry.name] = TensorBlob(dtype: .i64, shape: entry.shape, bytes: ids.withUnsafeBufferPointer { Data(buffer: $0) })
                continue
            default:
                break
            }
            let values: [Float] = (0..<n).map { _ in
                let g = rng.normal()
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
            // The release keeps hyper-connection, sink, ape and bias tensors in F32.
            let keepF32: Bool = switch entry.role {
            case .hcFn, .hcBase, .hcScale, .sink, .ape, .routerBias: true
            default: false
            }
            if dtype == "bf16" && !keepF32 {
                let bits = values.map(floatToBF16)
                tensors[entry.name] = TensorBlob(dtype: .bf16, shape: entry.shape, bytes: bits.withUnsafeBufferPointer { Data(buffer: $0) })
            } else {
                tensors[entry.name] = TensorBlob(shape: entry.shape, floats: values)
            }
        }
        let out = (output as NSString).appendingPathComponent("model.safetensors")
        do {
            try SafetensorsWriter.write(tensors, metadata: ["format": "pt", "generator": "dsv4 create-model seed=\(seed)"], to: out)
            let dst = (output as NSString).appendingPathComponent("config.json")
            if FileManager.default.fileExists(atPath: dst) { try FileManager.default.removeItem(atPath: dst) }
            try data.write(to: URL(fileURLWithPath: dst))
        } catch { fail("\(error)") }
        let (total, active) = c.parameterCounts
        print("wrote \(out): \(total) parameters (\(active) active per token), seed \(seed)")
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

    /// Standard normal (Box–Muller).
    mutating func normal() -> Float {
        let u1 = uniform(), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Float.pi * u2)
    }
}
