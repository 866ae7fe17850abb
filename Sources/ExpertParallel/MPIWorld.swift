// MPIWorld.swift: the few Open MPI calls dsv4 makes (rank, size, barrier, gathers, broadcast,
// non-blocking all-gather, abort), over MPI_COMM_WORLD. Nothing here is called unless the
// process was started by mpirun: `start()` returns nil otherwise and MPI is never initialised.
import CMPI
import Foundation

/// Errors of the MPI layer.
public enum ExpertParallelError: Error, CustomStringConvertible, Equatable {
    /// An MPI call returned an error code (only with MPI_ERRORS_RETURN; the default aborts).
    case mpiCall(name: String, code: Int32)
    /// `--expert-placement` could not be read or is inconsistent with the model.
    case placement(path: String, reason: String)
    /// The ranks were started on different models, configurations or options.
    case mismatch(String)

    public var description: String {
        switch self {
        case .mpiCall(let name, let code): "\(name) failed with MPI error code \(code)"
        case .placement(let path, let reason): "\(path): \(reason)"
        case .mismatch(let what): what
        }
    }
}

/// The processes of one `mpirun` job (MPI_COMM_WORLD). One per process, made by `start()`.
///
/// NOTE: MPI is initialised with MPI_THREAD_MULTIPLE so that a progress thread may drive
/// Open MPI's progress engine (`poke`) while the forward pass computes; the collectives
/// themselves are called from one thread at a time (one forward pass at a time).
public final class MPIWorld: @unchecked Sendable {
    /// This process's rank, 0 ..< size. Rank 0 does all I/O.
    public let rank: Int
    /// Number of ranks.
    public let size: Int
    private let comm: MPI_Comm

    /// Whether this process was launched by Open MPI's mpirun (it exports OMPI_COMM_WORLD_SIZE).
    public static var launchedByMPIRun: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }

    /// The active world, set by `start()`; nil in a plain single process.
    public nonisolated(unsafe) private(set) static var current: MPIWorld?

    /// Initialises MPI when launched by mpirun, else returns nil without touching MPI (a
    /// plain `dsv4` behaves exactly as a build without MPI). Idempotent.
    public static func start() -> MPIWorld? {
        if let current { return current }
        guard launchedByMPIRun else { return nil }
        var provided: Int32 = 0
        let rc = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_MULTIPLE), &provided)
        precondition(rc == MPI_SUCCESS, "MPI_Init_thread failed with code \(rc)")
        let world = MPIWorld(comm: dsv4_mpi_comm_world(), threadMultiple: provided >= Int32(MPI_THREAD_MULTIPLE))
        current = world
        atexit { MPIWorld.current?.finalize() }
        return world
    }

    /// Whether MPI granted MPI_THREAD_MULTIPLE (needed by `poke` from another thread).
    public let threadMultiple: Bool
    /// A duplicate of the world on which no message is ever sent: `poke` probes it.
    private var quiet: MPI_Comm?

    private init(comm: MPI_Comm, threadMultiple: Bool) {
        self.comm = comm
        self.threadMultiple = threadMultiple
        MPI_Comm_dup(comm, &quiet)
        var r: Int32 = 0
        var s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r)
        size = Int(s)
    }

    private var finalized = false

    /// MPI_Finalize, once (also registered with atexit by `start()`).
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        MPI_Finalize()
    }

    /// Ends the whole job: mpirun kills every rank and exits with `code`.
    public func abort(code: Int32) -> Never {
        MPI_Abort(comm, code)
        exit(code)
    }

    public func barrier() { MPI_Barrier(comm) }

    /// Every rank's `values` (the same count on each), rank by rank.
    public func allGather(_ values: [Int64]) -> [[Int64]] {
        let n = values.count
        var all = [Int64](repeating: 0, count: n * size)
        values.withUnsafeBufferPointer { s in
            all.withUnsafeMutableBufferPointer { r in
                _ = MPI_Allgather(s.baseAddress, Int32(n), dsv4_mpi_int64(), r.baseAddress, Int32(n), dsv4_mpi_int64(), comm)
            }
        }
        return (0..<size).map { Array(all[($0 * n)..<(($0 + 1) * n)]) }
    }

    /// The maximum of `value` over all ranks.
    public func allMax(_ value: Double) -> Double {
        var v = value
        var out = 0.0
        MPI_Allreduce(&v, &out, 1, dsv4_mpi_double(), dsv4_mpi_max(), comm)
        return out
    }

    /// Rank `root`'s bytes on every rank (other ranks' argument is ignored).
    public func broadcast(_ bytes: [UInt8], root: Int = 0) -> [UInt8] {
        var count = Int64(bytes.count)
        MPI_Bcast(&count, 1, dsv4_mpi_int64(), Int32(root), comm)
        var buffer = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        buffer.withUnsafeMutableBytes { broadcast($0, root: root) }
        return buffer
    }

    /// Rank `root`'s `buffer` into every rank's `buffer`, in place (the same byte count on
    /// every rank; root's is only read).
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int = 0) {
        guard buffer.count > 0 else { return }
        precondition(buffer.count <= Int(Int32.max), "broadcast of \(buffer.count) bytes")
        let rc = MPI_Bcast(buffer.baseAddress, Int32(buffer.count), dsv4_mpi_byte(), Int32(root), comm)
        precondition(rc == MPI_SUCCESS, "MPI_Bcast failed with code \(rc)")
    }

    /// A pending non-blocking collective.
    public struct Request: @unchecked Sendable {
        fileprivate var handle: MPI_Request?
    }

    /// Starts gathering `sendBytes` bytes from every rank into `receive`, rank r's at
    /// `offsets[r]` with `counts[r]` bytes (counts[rank] == sendBytes). Buffers must stay
    /// valid and untouched until `wait`.
    public func startAllGather(
        send: UnsafeRawPointer, sendBytes: Int, receive: UnsafeMutableRawPointer, counts: [Int32], offsets: [Int32]
    ) -> Request {
        precondition(counts.count == size && offsets.count == size && Int(counts[rank]) == sendBytes)
        var request: MPI_Request? = dsv4_mpi_request_null()
        let rc = MPI_Iallgatherv(send, Int32(sendBytes), dsv4_mpi_byte(), receive, counts, offsets, dsv4_mpi_byte(), comm, &request)
        precondition(rc == MPI_SUCCESS, "MPI_Iallgatherv failed with code \(rc)")
        return Request(handle: request)
    }

    /// Lets MPI progress `request` without blocking; true when it has completed.
    @discardableResult
    public func test(_ request: inout Request) -> Bool {
        var flag: Int32 = 0
        MPI_Test(&request.handle, &flag, dsv4_mpi_status_ignore())
        return flag != 0
    }

    /// Runs Open MPI's progress engine once (an MPI_Iprobe on a silent communicator), moving
    /// every pending non-blocking collective along. Safe from another thread only when
    /// `threadMultiple`.
    public func poke() {
        var flag: Int32 = 0
        MPI_Iprobe(dsv4_mpi_any_source(), dsv4_mpi_any_tag(), quiet, &flag, dsv4_mpi_status_ignore())
    }

    /// Blocks until `request` completes.
    public func wait(_ request: inout Request) {
        MPI_Wait(&request.handle, dsv4_mpi_status_ignore())
    }
}
