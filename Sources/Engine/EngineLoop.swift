// EngineLoop.swift: runs an EngineCore on its own thread and exposes it to async callers:
// submit → AsyncStream of events, cancel, metrics, shutdown.
import Foundation
import ModelRuntime
import PagedCache

/// One cache kind's bytes for /metrics (see `CacheKindUsage`).
public struct CacheKindMetrics: Sendable, Equatable {
    /// `CacheKind` raw value: csaEntries, indexerKeys, hcaEntries, windowRings, compressorTails, other.
    public var kind: String
    public var usedBytes: Int
    public var capacityBytes: Int
    public var prefixQueriedBytes: Int
    public var prefixHitBytes: Int
}

/// A point-in-time view of the engine for /metrics and logs.
public struct EngineMetrics: Sendable {
    public var counters: EngineCounters
    public var waitingOrRunningRequests: Int
    public var runningSequences: Int
    public var cacheUsedBytes: Int
    public var cacheBudgetBytes: Int
    public var cachedPages: Int
    /// Snapshots inside a page (prompt and output ends) held by the prefix cache.
    public var cachedTails: Int
    public var prefixQueriedTokens: Int
    public var prefixHitTokens: Int
    public var pageBytes: Int
    public var stateBytes: Int
    /// History-page bytes per token of context, and how pages store values (--kv-cache-dtype).
    public var pageBytesPerToken: Double
    public var cacheStorage: String
    /// Live blocks and their bytes by block kind (page, state, snapshot).
    public var cacheBlocks: [String: Int]
    public var cacheBlockBytes: [String: Int]
    /// Every cache kind the model's layout carries.
    public var cacheKinds: [CacheKindMetrics]
    /// Prompt tokens computed and still to compute, over requests still prefilling.
    public var prefillDoneTokens: Int
    public var prefillRemainingTokens: Int
    /// The disk tier's counters (nil: no --cache-dir).
    public var disk: DiskTierStats?

    /// The engine's figures as of now (call on the thread that drives `core`).
    public init(core: EngineCore) {
        let usage = core.cache.usage
        counters = core.counters
        waitingOrRunningRequests = core.activeRequestCount
        runningSequences = core.runningSequenceCount
        cacheUsedBytes = usage.usedBytes
        cacheBudgetBytes = usage.budgetBytes
        cachedPages = core.cache.prefix.count - core.cache.prefix.tailCount
        cachedTails = core.cache.prefix.tailCount
        prefixQueriedTokens = core.cache.prefix.queriedTokens
        prefixHitTokens = core.cache.prefix.hitTokens
        pageBytes = core.cache.layout.pageBytes
        stateBytes = core.cache.layout.stateBytes
        pageBytesPerToken = core.cache.layout.pageBytesPerToken
        cacheStorage = core.cache.layout.storage
        cacheBlocks = Dictionary(uniqueKeysWithValues: usage.blocks.map { ($0.key.rawValue, $0.value) })
        cacheBlockBytes = Dictionary(uniqueKeysWithValues: usage.bytesByBlockKind.map { ($0.key.rawValue, $0.value) })
        (prefillDoneTokens, prefillRemainingTokens) = core.prefillTokens
        disk = core.cache.disk?.stats
        cacheKinds = usage.kinds.map {
            CacheKindMetrics(
                kind: $0.kind.rawValue, usedBytes: $0.usedBytes, capacityBytes: $0.capacityBytes, prefixQueriedBytes: $0.prefixQueriedBytes,
                prefixHitBytes: $0.prefixHitBytes)
        }
    }
}

public final class EngineLoop: @unchecked Sendable {
    private let core: EngineCore
    private let lock = NSCondition()
    private var inbox: [(id: Int, prompt: [Int], parameters: SamplingParameters, constraint: (any TokenConstraintFactory)?, cacheOnly: Bool)] = []
    private var cancels: [Int] = []
    private var streams: [Int: AsyncStream<EngineEvent>.Continuation] = [:]
    private var pendingChoices: [Int: Int] = [:]
    private var nextID = 0
    private var stopping = false
    private var thread: Thread?
    private var lastMetrics: EngineMetrics

    /// - Parameter disk: a disk tier under the prefix cache; every RAM entry is written to it
    ///   when the loop shuts down.
    public init(model: any CausalLM, configuration: EngineConfiguration, detokenize: (([Int]) -> String)? = nil, disk: DiskTier? = nil) {
        core = EngineCore(model: model, configuration: configuration, detokenize: detokenize, disk: disk)
        lastMetrics = EngineLoop.snapshot(core)
        HeapTrimmer.start()
        let t = Thread { [weak self] in self?.run() }
        t.name = "dsv4-engine"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    public var model: any CausalLM { core.model }

    /// Validates and queues a request. Throws (before any work) when the request is invalid
    /// or can never fit.
    public func submit(
        prompt: [Int], parameters: SamplingParameters, constraint: (any TokenConstraintFactory)? = nil
    ) throws -> (id: Int, events: AsyncStream<EngineEvent>) {
        try enqueue(prompt: prompt, parameters: parameters, constraint: constraint, cacheOnly: false)
    }

    /// Queues a request that computes `prompt` into the prefix cache and samples nothing
    /// (`EngineCore.warm(prompt:)`); its stream ends when the prompt's state is cached.
    public func warm(prompt: [Int]) throws -> (id: Int, events: AsyncStream<EngineEvent>) {
        var p = SamplingParameters()
        p.maxTokens = 1
        return try enqueue(prompt: prompt, parameters: p, constraint: nil, cacheOnly: true)
    }

    private func enqueue(
        prompt: [Int], parameters: SamplingParameters, constraint: (any TokenConstraintFactory)?, cacheOnly: Bool
    ) throws -> (id: Int, events: AsyncStream<EngineEvent>) {
        try core.validate(prompt: prompt, parameters: parameters)
        let (stream, continuation) = AsyncStream<EngineEvent>.makeStream(bufferingPolicy: .unbounded)
        lock.lock()
        defer { lock.unlock() }
        guard !stopping else { throw EngineError.shuttingDown }
        let id = nextID
        nextID += 1
        streams[id] = continuation
        pendingChoices[id] = parameters.n
        inbox.append((id, prompt, parameters, constraint, cacheOnly))
        continuation.onTermination = { [weak self] reason in
            if case .cancelled = reason { self?.cancel(id) }
        }
        lock.signal()
        return (id, stream)
    }

    /// Cancels a request: it stops at the next step and frees its cache.
    public func cancel(_ id: Int) {
        lock.lock()
        cancels.append(id)
        lock.signal()
        lock.unlock()
    }

    public var metrics: EngineMetrics {
        lock.lock()
        defer { lock.unlock() }
        return lastMetrics
    }

    /// Cancels everything in flight and stops the thread.
    public func shutdown() {
        lock.lock()
        stopping = true
        lock.signal()
        lock.unlock()
        while thread?.isFinished == false { usleep(1000) }
    }

    /// Fails every request in flight or queued with `error` at once, from any thread, and
    /// refuses new ones. For when the engine thread cannot finish its step (it may be blocked
    /// for good, e.g. waiting for a lost expert-parallel worker): nothing waits for it.
    public func abort(_ error: EngineError) {
        lock.lock()
        stopping = true
        let all = Array(streams.values)
        streams.removeAll()
        pendingChoices.removeAll()
        lock.unlock()
        // Outside the lock, as in run() (see the NOTE there).
        for c in all {
            c.yield(.failed(error))
            c.finish()
        }
    }

    private static func snapshot(_ core: EngineCore) -> EngineMetrics { EngineMetrics(core: core) }

    /// Engine-side id mapping: loop ids are the core's ids (both count from 0 in submit order).
    private var coreIDs: [Int: Int] = [:]
    private var loopIDs: [Int: Int] = [:]

    private func run() {
        while true {
            lock.lock()
            while inbox.isEmpty && cancels.isEmpty && !core.hasWork && !stopping { lock.wait() }
            let newRequests = inbox
            inbox.removeAll()
            let newCancels = cancels
            cancels.removeAll()
            let stop = stopping
            lock.unlock()

            var events: [(Int, EngineEvent)] = []
            for r in newRequests {
                do {
                    let cid = try r.cacheOnly ? core.warm(prompt: r.prompt) : core.add(prompt: r.prompt, parameters: r.parameters, constraint: r.constraint)
                    coreIDs[r.id] = cid
                    loopIDs[cid] = r.id
                } catch let e as EngineError {
                    events.append((r.id, .failed(e)))
                } catch {
                    events.append((r.id, .failed(.modelFailure("\(error)"))))
                }
            }
            for id in newCancels { if let cid = coreIDs[id] { core.cancel(cid) } }
            if stop {
                for (lid, cid) in coreIDs { core.cancel(cid); _ = lid }
            }
            for (cid, e) in core.step() { if let lid = loopIDs[cid] { events.append((lid, e)) } }

            lock.lock()
            lastMetrics = Self.snapshot(core)
            var deliveries: [(AsyncStream<EngineEvent>.Continuation, EngineEvent)] = []
            var finishing: [AsyncStream<EngineEvent>.Continuation] = []
            var done: [Int] = []
            for (id, e) in events {
                if let c = streams[id] { deliveries.append((c, e)) }
                switch e {
                case .failed: done.append(id)
                case .finished:
                    pendingChoices[id, default: 1] -= 1
                    if pendingChoices[id]! <= 0 { done.append(id) }
                default: break
                }
            }
            for id in done {
                if let c = streams.removeValue(forKey: id) { finishing.append(c) }
                pendingChoices[id] = nil
                if let cid = coreIDs.removeValue(forKey: id) { loopIDs[cid] = nil }
            }
            let finished = stop && !core.hasWork
            lock.unlock()
            // NOTE: streams are resumed outside the lock. Yielding or finishing takes the
            // consumer task's status lock, and a task being cancelled holds that lock while its
            // onTermination handler calls cancel(_:), which takes ours: resuming under our lock
            // deadlocked the engine when a client disconnected at the wrong moment.
            for (c, e) in deliveries { c.yield(e) }
            for c in finishing { c.finish() }
            if finished {
                // The prefix cache outlives the process on disk (no-op without a disk tier).
                core.cache.persistToDisk()
                lock.lock()
                let rest = Array(streams.values)
                streams.removeAll()
                lock.unlock()
                for c in rest { c.yield(.failed(.shuttingDown)); c.finish() }
                return
            }
        }
    }
}
