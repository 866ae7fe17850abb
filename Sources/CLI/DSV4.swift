// DSV4.swift: the `dsv4` command and its subcommands (the composition root).
import ArgumentParser
import DeepSeekV4
import ExpertParallel
import Foundation

@main
struct DSV4: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dsv4",
        abstract: "Inference for DeepSeek-V4-architecture mixture-of-experts models.",
        subcommands: [ServeCommand.self, LogitsCommand.self, GenerateCommand.self, TokenizeCommand.self, DetokenizeCommand.self, RenderCommand.self, ParseCommand.self, BenchCommand.self, CreateModelCommand.self, InspectCommand.self, CacheCommand.self])
}

/// Prints `message` to stderr and exits non-zero: every CLI failure goes through here.
/// Under mpirun it ends the whole job (MPI_Abort), so no rank waits for this one.
func fail(_ message: String) -> Never {
    let rank = MPIWorld.current.map { $0.rank == 0 ? "" : "rank \($0.rank): " } ?? ""
    FileHandle.standardError.write(Data("dsv4: \(rank)error: \(message)\n".utf8))
    MPIWorld.current?.abort(code: 1)
    exit(1)
}

extension KVCacheDType: ExpressibleByArgument {}

/// `--kv-cache-dtype`, the same on every command that loads a model.
let kvCacheDTypeHelp: ArgumentHelp =
    "How the cache stores compressed entries and indexer keys: f32 (exact), bf16, fp8 (E4M3 entries + BF16 RoPE dims, byte indexer keys)."
