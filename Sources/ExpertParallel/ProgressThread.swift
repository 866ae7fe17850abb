// ProgressThread.swift: a thread that keeps Open MPI's progress engine turning while the
// forward pass computes. Open MPI moves a non-blocking collective along only inside MPI calls;
// without this, a wave's all-gather above the eager size would mostly wait for the final
// MPI_Wait, and the waves would hide nothing.
import Foundation
import Synchronization

/// Polls `MPIWorld.poke` every `interval` between `begin()` and `end()`; parked otherwise.
public final class ProgressThread: @unchecked Sendable {
    private let world: MPIWorld
    private let intervalMicroseconds: UInt32
    private let active = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)

    /// - Parameter intervalMicroseconds: sleep between two polls (> 0: the cores are shared
    ///   with the kernel threads, so the thread must not spin).
    public init(world: MPIWorld, intervalMicroseconds: Int) {
        precondition(world.threadMultiple && intervalMicroseconds > 0)
        self.world = world
        self.intervalMicroseconds = UInt32(intervalMicroseconds)
        let thread = Thread { [self] in loop() }
        thread.name = "dsv4-mpi-progress"
        thread.start()
    }

    /// Starts polling (a collective was posted).
    public func begin() {
        if !active.exchange(true, ordering: .acquiringAndReleasing) { wake.signal() }
    }

    /// Stops polling (the caller is about to wait, which progresses by itself).
    public func end() { active.store(false, ordering: .releasing) }

    private func loop() {
        while true {
            wake.wait()
            while active.load(ordering: .acquiring) {
                world.poke()
                usleep(intervalMicroseconds)
            }
        }
    }
}
