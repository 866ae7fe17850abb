// EngineClock.swift: the engine's source of time (request ages for fair admission, queue
// wait figures). Injected, so scheduling over time is tested with a manual clock.

/// Time since an arbitrary fixed origin.
public protocol EngineClock: Sendable {
    /// The current time; never decreases.
    var now: Duration { get }
}

/// The system's monotonic clock.
public struct SystemClock: EngineClock {
    private let origin = ContinuousClock.now

    public init() {}

    public var now: Duration { ContinuousClock.now - origin }
}
