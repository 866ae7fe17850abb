// ManualClock.swift: an EngineClock that moves only when a test advances it.
import Engine
import Foundation

final class ManualClock: EngineClock, @unchecked Sendable {
    private let lock = NSLock()
    private var time: Duration = .zero

    var now: Duration { lock.withLock { time } }

    func advance(by d: Duration) { lock.withLock { time += d } }
}
