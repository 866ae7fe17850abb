// ServeCommand+ExpertParallel.swift: `dsv4 serve` under mpirun. Rank 0 is the whole server
// (engine, cache, HTTP) with a dispatching expert executor; the other ranks only run their
// experts for rank 0's layer calls. A lost worker fails the running requests with a 503 and
// ends rank 0 non-zero instead of leaving it blocked in MPI.
import DeepSeekV4
import Engine
import ExpertParallel
import Foundation
import Logging
import Synchronization

extension ServeCommand {
    /// Under mpirun: attaches this rank's experts to `model`. A worker rank then serves rank 0's
    /// layer calls and exits when rank 0 quits (this never returns there); rank 0 gets the
    /// executor the server's model runs its MoE layers through. Nil without mpirun.
    func attachExpertParallel(to model: DeepSeekV4Model) -> DispatchingExpertExecutor? {
        guard let world = ExpertParallelOptions.world else { return nil }
        guard let sharded = parallel.attach(to: model, kvCacheDType: kvCacheDType, extra: [("command", ExpertParallelOptions.digest("serve"))])
        else { return nil }
        guard world.rank == 0 else {
            sharded.serveLayerCalls()
            world.finalize()
            Foundation.exit(0)
        }
        let dispatcher = DispatchingExpertExecutor(sharded: sharded)
        model.executor = dispatcher
        return dispatcher
    }
}

/// Rank 0's log lines at shutdown: per MoE layer, what the dispatch and the combine moved.
func logExpertParallelTraffic(_ dispatcher: DispatchingExpertExecutor, logger: Logger) {
    let sharded = dispatcher.sharded
    for (l, (d, c)) in zip(dispatcher.dispatchStats, sharded.stats).enumerated() where d.calls > 0 {
        let n = Double(d.calls)
        logger.info(
            "expert parallelism",
            metadata: [
                "layer": "\(l)", "calls": "\(d.calls)",
                "dispatch_bytes_per_call": "\(Int(Double(d.bytesSent) / n))",
                "dispatch_us_per_call": "\(String(format: "%.1f", 1e6 * d.seconds / n))",
                "combine_bytes_received_per_call": "\(Int(Double(c.bytesReceived) / n))",
                "combine_waves_per_call": "\(String(format: "%.2f", Double(c.waves) / n))",
                "combine_wait_us_per_call": "\(String(format: "%.1f", 1e6 * c.exposedSeconds / n))",
                "experts_us_per_call": "\(String(format: "%.1f", 1e6 * c.computeSeconds / n))",
            ])
    }
}

/// Rank 0's guard against a worker rank that died or stopped answering. MPI gives no error
/// for either: the layer call just never completes. Two signs end the server:
/// - a layer call in flight longer than `stallSeconds` (a worker stopped answering);
/// - SIGTERM/SIGINT while a layer call has been stuck for `signalGraceSeconds`: mpirun sends
///   SIGTERM to every rank when one dies, and SIGKILL 1 s later (odls_base_sigkill_timeout),
///   so rank 0 has well under a second to answer its clients.
/// Either way every request in flight fails with a 503 (`EngineError.unavailable`), and the
/// process exits 1 without MPI_Finalize (which would wait for the lost rank).
final class WorkerWatch: Sendable {
    let dispatcher: DispatchingExpertExecutor
    let engine: EngineLoop
    let logger: Logger
    let stallSeconds: Double
    let signalGraceSeconds = 0.25
    /// How long after the signal a stuck call is looked for; with `flushSeconds`, under the
    /// 1 s before mpirun's SIGKILL.
    let signalWindowSeconds = 0.55
    /// Time for the error responses to reach the clients before the process exits.
    let flushSeconds = 0.3
    private let ending = Atomic<Bool>(false)

    init(dispatcher: DispatchingExpertExecutor, engine: EngineLoop, logger: Logger, stallSeconds: Double) {
        self.dispatcher = dispatcher
        self.engine = engine
        self.logger = logger
        self.stallSeconds = stallSeconds
    }

    /// Starts the stall check (every 100 ms).
    func start() {
        let t = Thread { [self] in
            while true {
                if let s = dispatcher.inFlightSeconds, s > stallSeconds {
                    lost(String(format: "an expert-parallel worker rank stopped answering (a layer call waited %.1f s)", s))
                }
                usleep(100_000)
            }
        }
        t.name = "dsv4-worker-watch"
        t.start()
    }

    /// A shutdown signal arrived: if a layer call is stuck (now, or in the next
    /// `signalWindowSeconds`: the engine may be between two layers), the job is being torn
    /// down around a lost worker and nothing can drain; otherwise the graceful shutdown goes on.
    func shutdownSignalled() {
        let t = Thread { [self] in
            let end = Date(timeIntervalSinceNow: signalWindowSeconds)
            while Date() < end {
                if let s = dispatcher.inFlightSeconds, s >= signalGraceSeconds {
                    lost("the mpirun job is ending while a step waits for the expert-parallel worker ranks (a worker rank died or was stopped)")
                }
                usleep(20_000)
            }
        }
        t.name = "dsv4-signal-watch"
        t.start()
    }

    /// Fails every request with a 503 carrying `reason`, then exits 1.
    func lost(_ reason: String) {
        guard !ending.exchange(true, ordering: .acquiringAndReleasing) else { return }
        logger.critical("\(reason); failing the requests in flight and exiting")
        engine.abort(.unavailable(reason: reason))
        usleep(UInt32(flushSeconds * 1e6))
        _exit(1)
    }
}
