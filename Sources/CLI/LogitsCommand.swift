// LogitsCommand.swift: `dsv4 logits`, the model's logits for a list of token ids.
import ArgumentParser
import Checkpoint
import DeepSeekV4
import Foundation

/// How the sequence is fed to the model.
enum LogitsMode: Equatable, ExpressibleByArgument {
    /// One pass over the whole sequence.
    case full
    /// The first id as prefill, then one token at a time.
    case decode
    /// Prefill in chunks of N tokens.
    case chunked(Int)

    init?(argument: String) {
        switch argument {
        case "full": self = .full
        case "decode": self = .decode
        default:
            guard argument.hasPrefix("chunked="), let n = Int(argument.dropFirst(8)), n > 0 else { return nil }
            self = .chunked(n)
        }
    }

    /// Chunk sizes for a sequence of `count` tokens.
    func chunks(count: Int) -> [Range<Int>] {
        let size: Int
        switch self {
        case .full: size = count
        case .decode: size = 1
        case .chunked(let n): size = n
        }
        return stride(from: 0, to: count, by: max(size, 1)).map { $0..<min($0 + size, count) }
    }
}

struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "Compute logits for a JSON array of token ids and write them as F32 [T, vocab] safetensors.")

    @Option(help: "Model folder (config.json + safetensors).")
    var model: String

    @Option(help: "JSON file holding an array of token ids.")
    var input: String

    @Option(help: "Output .safetensors file; holds one tensor `logits`.")
    var output: String

    @Option(help: "full | decode | chunked=N")
    var mode: LogitsMode = .full

    @Option(name: .customLong("kv-cache-dtype"), help: kvCacheDTypeHelp)
    var kvCacheDType: KVCacheDType = .f32

    @Flag(help: "Print a line per shard as it is mapped and verified (default: only on a terminal or for checkpoints of 1 GiB or more).")
    var progress = false

    @OptionGroup var parallel: ExpertParallelOptions

    func run() throws {
        // Under mpirun, rank 0 reads the input and sends the ids to the other ranks.
        let world = ExpertParallelOptions.world
        var ids = ExpertParallelOptions.isIORank ? readIds() : []
        if let world {
            let bytes = world.broadcast(ids.withUnsafeBytes { Array($0) })
            ids = bytes.withUnsafeBytes { Array($0.bindMemory(to: Int.self)) }
        }

        let m: DeepSeekV4Model
        do { m = try DeepSeekV4Model(directory: model, kvCacheDType: kvCacheDType, progress: LoadProgressPrinter.callback(always: progress)) } catch { fail("\(error)") }
        parallel.attach(to: m, kvCacheDType: kvCacheDType, extra: [("logits --mode", ExpertParallelOptions.digest("\(mode)"))])
        guard ExpertParallelOptions.isIORank else {
            // Follow rank 0's passes; only rank 0 writes.
            let state = m.makeState()
            do { for r in mode.chunks(count: ids.count) { _ = try m.forward(tokens: Array(ids[r]), state: state) } } catch { fail("\(error)") }
            return
        }
        reportUnusedTensors(m)
        let state = m.makeState()
        let V = m.config.vocabSize
        var logits: [Float] = []
        logits.reserveCapacity(ids.count * V)
        let start = Date()
        do {
            for r in mode.chunks(count: ids.count) {
                logits += try m.forward(tokens: Array(ids[r]), state: state)
            }
        } catch { fail("\(error)") }
        let seconds = Date().timeIntervalSince(start)
        do {
            try SafetensorsWriter.write(["logits": TensorBlob(shape: [ids.count, V], floats: logits)], to: output)
        } catch { fail("\(error)") }
        FileHandle.standardError.write(Data(String(format: "dsv4: %d tokens in %.3f s (%.1f tok/s), mode %@\n",
                                                   ids.count, seconds, Double(ids.count) / seconds, "\(mode)").utf8))
    }

    /// The token ids of `input`, or a located failure.
    func readIds() -> [Int] {
        guard let data = FileManager.default.contents(atPath: input) else { fail("cannot read input file \(input)") }
        guard let arr = try? JSONSerialization.jsonObject(with: data) as? [Any] else {
            fail("\(input): expected a JSON array of token ids")
        }
        var ids: [Int] = []
        for (i, v) in arr.enumerated() {
            guard let n = JSONNumber.integer(v) else { fail("\(input): element \(i) is not an integer token id") }
            ids.append(n)
        }
        guard !ids.isEmpty else { fail("\(input): the token list is empty") }
        return ids
    }
}

/// Tensors the main model does not read are reported, never fatal: the MTP block as such, and
/// anything else by name (a converter's extras, or a sign of a misnamed tensor).
func reportUnusedTensors(_ m: DeepSeekV4Model) {
    let mtp = m.mtpTensors, extra = m.unknownTensors
    var lines: [String] = []
    if !mtp.isEmpty { lines.append("dsv4: MTP block: \(mtp.count) tensors recognised, not used by the main model") }
    if !extra.isEmpty {
        lines.append("dsv4: warning: \(extra.count) unknown tensor(s) in \(m.store.directory) ignored: "
            + extra.prefix(5).joined(separator: ", ") + (extra.count > 5 ? ", …" : ""))
    }
    if !lines.isEmpty { FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8)) }
}
