// DiskTierEngineTests.swift: the engine over a disk tier, on the fake model (which throws
// when its pages or state are not exactly the history): a restarted engine resumes from disk
// with the same outputs, under eviction pressure and random load.
import Engine
import Foundation
import ModelRuntime
import PagedCache
import Testing

@Suite struct DiskTierEngineTests {
    func directory() -> String {
        let d = NSTemporaryDirectory() + "dsv4-engine-disk-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func engine(_ model: FakeModel, dir: String, budget: Int) throws -> EngineCore {
        let disk = try DiskTier(directory: dir, budgetBytes: 1 << 30, layout: model.cacheLayout, modelIdentity: "fake") { _ in }
        return EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: budget, tokenBudget: 16, maxRunning: 8), disk: disk)
    }

    func cached(_ events: [EngineEvent]?) -> Int {
        for e in events ?? [] { if case .started(_, let c) = e { return c } }
        return -1
    }

    @Test func aRestartedEngineResumesFromDiskWithTheSameTokens() throws {
        let dir = directory()
        let prompt = (0..<203).map { ($0 * 13 + 5) % 49 + 1 }
        let turn2 = prompt + [7, 7, 3, 9, 11]
        // Cold reference, no disk.
        let coldModel = FakeModel()
        let cold = EngineCore(model: coldModel, configuration: EngineConfiguration(cacheBytes: 1 << 20, tokenBudget: 16))
        let ref = try cold.add(prompt: turn2, parameters: greedy(6))
        let expected = drain(cold).tokens[ref]![0]!
        // First server: the prompt, then shutdown.
        do {
            let core = try engine(FakeModel(), dir: dir, budget: 1 << 20)
            _ = try core.add(prompt: prompt, parameters: greedy(4))
            drain(core)
            core.cache.persistToDisk()
            #expect((core.cache.disk?.stats.entriesWritten ?? 0) >= 50)
        }
        // Second server on the same directory: the new turn resumes at the previous prompt's
        // end (203 = 50 pages of 4 and a tail of 3, read back from disk).
        let model = FakeModel()
        let core = try engine(model, dir: dir, budget: 1 << 20)
        let id = try core.add(prompt: turn2, parameters: greedy(6))
        let (tokens, events) = drain(core)
        #expect(cached(events[id]) == 203)
        #expect(tokens[id]![0]! == expected)
        #expect(core.cache.disk!.stats.hitTokens == 203)
    }

    /// A conversation's next turn (prompt + answer + a new message) after a restart resumes
    /// at the end of the answer, from a tail on disk, with the same tokens as cold.
    @Test func aNextTurnAfterARestartResumesAtTheAnswersEndFromDisk() throws {
        let dir = directory()
        let prompt = (0..<61).map { ($0 * 11 + 3) % 49 + 1 }
        var answer: [Int] = []
        do {
            let core = try engine(FakeModel(), dir: dir, budget: 1 << 20)
            let a = try core.add(prompt: prompt, parameters: greedy(6))
            answer = try #require(drain(core).tokens[a]?[0])
            core.cache.persistToDisk()
        }
        let next = prompt + answer + [5, 6, 7]
        let core = try engine(FakeModel(), dir: dir, budget: 1 << 20)
        let id = try core.add(prompt: next, parameters: greedy(5))
        let (tokens, events) = drain(core)
        #expect(cached(events[id]) == prompt.count + answer.count - 1)
        #expect(core.cache.prefix.tailCount >= 1)
        let cold = EngineCore(model: FakeModel(), configuration: EngineConfiguration(cacheBytes: 1 << 20, tokenBudget: 16))
        let ref = try cold.add(prompt: next, parameters: greedy(5))
        #expect(tokens[id]![0]! == drain(cold).tokens[ref]![0]!)
    }

    @Test func evictedEntriesComeBackUnderRandomLoad() throws {
        let dir = directory()
        let model = FakeModel()
        let layout = model.cacheLayout
        // Tight RAM: entries keep moving to disk and back.
        let core = try engine(model, dir: dir, budget: 24 * (layout.pageBytes + layout.stateBytes))
        let stems = (0..<4).map { s in (0..<(40 + 8 * s)).map { ($0 * 5 + s) % 47 + 1 } }
        var rng = SeededGenerator(seed: 7)
        var hits = 0
        for round in 0..<40 {
            let stem = stems[Int(rng.next() % 4)]
            let prompt = stem + [Int(rng.next() % 40) + 1]
            let id = try core.add(prompt: prompt, parameters: greedy(Int(rng.next() % 5) + 1))
            let (tokens, events) = drain(core)
            // The fake model throws on any wrong page or state: a finished request proves them.
            #expect(tokens[id]?[0]?.isEmpty == false, "round \(round)")
            hits += cached(events[id]) > 0 ? 1 : 0
        }
        #expect(hits > 20)
        #expect(core.cache.disk!.stats.entriesRead > 0 && core.cache.disk!.stats.entriesWritten > 0)
    }
}

/// Preemption swaps: a preempted sequence's pages and state stay in the prefix cache as
/// evictable entries (written to the disk tier when memory runs short) and it resumes from
/// them: every position is computed exactly once, with the tokens of an uninterrupted run.
@Suite struct PreemptionSwapTests {
    func run(disk: Bool) throws -> (core: EngineCore, tokens: [[Int]]) {
        let model = FakeModel(pageTokens: 4)
        let layout = model.cacheLayout
        // Each request alone needs 4 pages and a state; together they do not fit.
        let budget = 2 * layout.stateBytes + 4 * layout.pageBytes
        var tier: DiskTier?
        if disk {
            let dir = NSTemporaryDirectory() + "dsv4-swap-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            tier = try DiskTier(directory: dir, budgetBytes: 1 << 30, layout: layout, modelIdentity: "fake") { _ in }
        }
        let core = EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: budget, tokenBudget: 64), disk: tier)
        let a = try core.add(prompt: [1, 2, 3, 4, 5, 6], parameters: greedy(8))
        let b = try core.add(prompt: [7, 8, 9, 10, 11, 12], parameters: greedy(8))
        let out = drain(core).tokens
        return (core, [try #require(out[a]?[0]), try #require(out[b]?[0])])
    }

    @Test func aPreemptedSequenceResumesFromItsSwappedStateWithoutRecomputing() throws {
        let (core, tokens) = try run(disk: true)
        #expect(core.counters.preemptions > 0, "the budget was meant to force preemption")
        // Each request computes 6 + 8 - 1 = 13 positions, once: nothing was recomputed.
        #expect(core.counters.computedTokens == 2 * 13)
        for (i, prompt) in [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]].enumerated() {
            let solo = EngineCore(model: FakeModel(pageTokens: 4), configuration: EngineConfiguration(cacheBytes: 1 << 20))
            let id = try solo.add(prompt: prompt, parameters: greedy(8))
            #expect(drain(solo).tokens[id]![0]! == tokens[i])
        }
        #expect(core.cache.disk!.stats.entriesWritten > 0 && core.cache.disk!.stats.entriesRead > 0, "swapped through the disk")
    }
}
