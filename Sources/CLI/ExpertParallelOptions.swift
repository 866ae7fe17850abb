// ExpertParallelOptions.swift: `--expert-placement` / `--expert-waves` and the composition
// of expert parallelism under mpirun: start MPI, check that every rank runs the same model and
// options, and give the model a ShardedExpertExecutor. Without mpirun none of this runs.
import ArgumentParser
import Checkpoint
import DeepSeekV4
import ExpertParallel
import Foundation

/// Options of commands that can run over the ranks of an mpirun job.
struct ExpertParallelOptions: ParsableArguments {
    @Option(
        name: .customLong("expert-placement"),
        help: "Under mpirun: JSON file {\"expert_rank\": [rank per expert] or [[rank per expert] per layer]} (default: contiguous blocks).")
    var expertPlacement: String?

    @Option(name: .customLong("expert-waves"), help: "Under mpirun: the most waves an MoE layer's experts are cut into (1: no pipelining).")
    var expertWaves = 4

    @Option(
        name: .customLong("expert-progress-us"),
        help: "Under mpirun: microseconds between two polls of MPI's progress engine while experts compute (0: no progress thread).")
    var expertProgressMicroseconds = 50

    func validate() throws {
        guard expertWaves >= 1 else { throw ValidationError("--expert-waves must be at least 1") }
        guard expertProgressMicroseconds >= 0 else { throw ValidationError("--expert-progress-us must be at least 0") }
    }

    /// The mpirun job this process belongs to, or nil (not launched by mpirun).
    static var world: MPIWorld? { MPIWorld.start() }

    /// Whether this process does the I/O: rank 0, or the only process.
    static var isIORank: Bool { (world?.rank ?? 0) == 0 }

    /// Under mpirun: checks that every rank loaded the same model with the same options, then
    /// gives `model` an executor that runs this rank's experts. Returns it (nil without mpirun).
    @discardableResult
    func attach(to model: DeepSeekV4Model, kvCacheDType: KVCacheDType, extra: [(String, UInt64)] = []) -> ShardedExpertExecutor? {
        guard let world = Self.world else { return nil }
        let counts = model.routedExperts.map(\.count)
        let placement: ExpertPlacement
        do {
            placement = try expertPlacement.map { try ExpertPlacement.load(path: $0, expertCounts: counts, rankCount: world.size) }
                ?? .contiguous(expertCounts: counts, rankCount: world.size)
        } catch { fail("\(error)") }
        var fields: [(name: String, value: UInt64)] = [
            ("config.json", Self.digest(file: (model.store.directory as NSString).appendingPathComponent("config.json"))),
            ("checkpoint tensors (names, dtypes, shapes)", Self.tensorDigest(model.store)),
            ("--kv-cache-dtype", Self.digest(kvCacheDType.rawValue)),
            ("expert placement", placement.digest),
            ("--expert-waves", UInt64(expertWaves)),
            ("--expert-progress-us", UInt64(expertProgressMicroseconds)),
        ]
        fields += extra.map { (name: $0.0, value: $0.1) }
        do { try world.checkAgreement(fields) } catch {
            // Every rank sees the same mismatch; rank 0 reports it and ends the job.
            if world.rank == 0 { fail("\(error)") }
            world.barrier()  // never completes: rank 0's abort ends this process
        }
        let executor = ShardedExpertExecutor(
            experts: model.routedExperts, activation: model.expertActivation, placement: placement, world: world, maxWaves: expertWaves)
        if expertProgressMicroseconds > 0 {
            guard world.threadMultiple else { fail("--expert-progress-us needs MPI_THREAD_MULTIPLE, which this Open MPI does not provide; pass 0") }
            executor.progress = ProgressThread(world: world, intervalMicroseconds: expertProgressMicroseconds)
        }
        model.executor = executor
        let own = Double(executor.ownedExpertBytes) / 1e6
        let all = Double(model.routedExperts.joined().reduce(0) { $0 + $1.w1.byteCount + $1.w3.byteCount + $1.w2.byteCount }) / 1e6
        FileHandle.standardError.write(Data(String(
            format: "dsv4: rank %d/%d: %.1f of %.1f MB of routed experts, up to %d waves per layer, %@\n",
            world.rank, world.size, own, all, expertWaves, Self.numaNodes()).utf8))
        return executor
    }

    /// Sends this process's stdout and stderr to /dev/null: ranks other than 0 follow rank 0's
    /// work and print nothing once their model is attached (their start-up errors still show).
    static func silenceOutput() {
        let null = open("/dev/null", O_WRONLY)
        guard null >= 0 else { return }
        dup2(null, STDOUT_FILENO)
        dup2(null, STDERR_FILENO)
        close(null)
    }

    /// The NUMA nodes this host has online ("1 NUMA node"), for the start-up line.
    ///
    /// NOTE: nothing is bound. A rank reads only its own experts, so with a cold page cache and
    /// `mpirun --bind-to numa` the kernel's first-touch policy already places them on the
    /// rank's node; pages cached by an earlier run stay where they are.
    static func numaNodes() -> String {
        guard let text = try? String(contentsOfFile: "/sys/devices/system/node/online", encoding: .utf8) else { return "NUMA nodes unknown" }
        var count = 0
        for part in text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
            let ends = part.split(separator: "-").compactMap { Int($0) }
            count += ends.count == 2 ? ends[1] - ends[0] + 1 : 1
        }
        return count == 1 ? "1 NUMA node" : "\(count) NUMA nodes"
    }

    static func digest(_ s: String) -> UInt64 {
        var h = FNV1a()
        h.add(s)
        return h.value
    }

    static func digest(file path: String) -> UInt64 {
        var h = FNV1a()
        h.add(FileManager.default.contents(atPath: path) ?? Data())
        return h.value
    }

    static func tensorDigest(_ store: TensorStore) -> UInt64 {
        var h = FNV1a()
        for name in store.names.sorted() {
            guard let v = store.view(name) else { continue }
            h.add(name)
            h.add(v.dtype.rawValue)
            for n in v.shape { h.add(UInt64(n)) }
        }
        return h.value
    }
}
