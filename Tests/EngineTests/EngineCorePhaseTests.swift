// EngineCorePhaseTests.swift: the phases of EngineCore.step (schedule, prepare, run,
// postprocess), each called on its own on the fake model.
@testable import Engine
import Foundation
import ModelRuntime
import PagedCache
import Testing

/// A model that always fails its forward pass.
private final class FailingModel: CausalLM, @unchecked Sendable {
    let base = FakeModel()
    var vocabSize: Int { base.vocabSize }
    var maxPositions: Int { base.maxPositions }
    var cacheLayout: CacheLayout { base.cacheLayout }
    var eosTokenIds: [Int] { base.eosTokenIds }
    func initializeState(_ state: UnsafeMutablePointer<Float>) { base.initializeState(state) }
    func forward(_ steps: [SequenceStep]) throws -> [[Float]] { throw FakeModelError(description: "boom") }
}

@Suite struct EngineCorePhaseTests {
    /// schedule: one task per unfinished choice, planned within the token budget; nothing is
    /// opened yet.
    @Test func schedulePlansEveryWaitingRequestWithinTheBudget() throws {
        let core = EngineCore(model: FakeModel(), configuration: EngineConfiguration(tokenBudget: 8))
        let a = try core.add(prompt: [1, 2, 3, 4, 5], parameters: greedy(2))
        let b = try core.add(prompt: [6, 7, 8, 9, 10, 11], parameters: greedy(2))
        let plan = core.schedule()
        #expect(plan.order.first == TaskKey(request: a, choice: 0))
        #expect(plan.run[TaskKey(request: a, choice: 0)] == 5)
        #expect(plan.run[TaskKey(request: b, choice: 0)] == 3)  // what is left of the 8 tokens
        #expect(plan.preempt.isEmpty && core.runningSequenceCount == 0)
    }

    /// prepare: opens the planned sequences (reporting `started`), splits the prompt at page
    /// boundaries (4 tokens here) with a snapshot at each full boundary and at the prompt's
    /// end (a tail: where a next turn resumes), and asks for logits
    /// only at the end of the prompt.
    @Test func prepareSplitsAtPageBoundariesAndReportsStarted() throws {
        let core = EngineCore(model: FakeModel(pageTokens: 4), configuration: EngineConfiguration())
        let id = try core.add(prompt: Array(1...10), parameters: greedy(1))
        var events: [(Int, EngineEvent)] = []
        let batch = core.prepare(core.schedule(), events: &events)
        #expect(events.count == 1 && events[0].0 == id && events[0].1 == .started(promptTokens: 10, cachedTokens: 0))
        #expect(batch.segments.map(\.tokens) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]])
        #expect(batch.segments.map { $0.snapshot != nil } == [true, true, true])
        #expect(batch.segments.map(\.wantsLogits) == [false, false, true])
        #expect(batch.steps.map(\.position) == [0, 4, 8])
        #expect(core.runningSequenceCount == 1)
    }

    /// run: a failing model fails every request of the batch, frees its cache and returns nil.
    @Test func runFailsEveryRequestOfTheBatchWhenTheModelThrows() throws {
        let core = EngineCore(model: FailingModel(), configuration: EngineConfiguration())
        let a = try core.add(prompt: [1, 2, 3], parameters: greedy(2))
        let b = try core.add(prompt: [4, 5], parameters: greedy(2))
        var events: [(Int, EngineEvent)] = []
        let batch = core.prepare(core.schedule(), events: &events)
        events.removeAll()
        #expect(core.run(batch, events: &events) == nil)
        #expect(Set(events.map(\.0)) == [a, b])
        #expect(events.allSatisfy { if case .failed(.modelFailure) = $0.1 { true } else { false } })
        #expect(!core.hasWork && core.runningSequenceCount == 0 && core.counters.steps == 0)
    }

    /// postprocess: commits the batch, forks choice 0 into n choices after the prompt, samples
    /// each from the given logits (greedy: the largest) and finishes choices at max_tokens.
    @Test func postprocessForksSamplesAndFinishes() throws {
        let model = FakeModel(vocabSize: 50)
        let core = EngineCore(model: model, configuration: EngineConfiguration())
        let id = try core.add(prompt: [1, 2, 3], parameters: greedy(1, n: 2))
        var events: [(Int, EngineEvent)] = []
        let batch = core.prepare(core.schedule(), events: &events)
        var row = [Float](repeating: 0, count: 50)
        row[42] = 9  // hand-made logits: greedy picks 42
        let out = core.postprocess(batch, logits: batch.segments.map { $0.wantsLogits ? row : [] })
        let tokens = out.compactMap { e -> Int? in if case .token(_, let s) = e.1 { s.token } else { nil } }
        let finished = out.compactMap { e -> Int? in if case .finished(let c, .length, nil) = e.1 { c } else { nil } }
        #expect(tokens == [42, 42])
        #expect(finished == [0, 1])
        #expect(out.allSatisfy { $0.0 == id })
        #expect(!core.hasWork && core.runningSequenceCount == 0)
        // Three tokens: no full page to register; the prompt's end is cached as one tail (the
        // choices stopped there too: nothing more to keep).
        #expect(core.cache.prefix.count == 1 && core.cache.prefix.tailCount == 1)
    }

    /// schedule: under memory pressure the newest running request is preempted (its sequence
    /// closed, its cache swapped into the prefix cache; it resumes from there:
    /// PreemptionSwapTests).
    @Test func scheduleAppliesPreemptionByClosingTheSequence() throws {
        let model = FakeModel(pageTokens: 4)
        let layout = model.cacheLayout
        // Room for two sequences' state and a few pages: both start, then the second must yield.
        let core = EngineCore(
            model: model, configuration: EngineConfiguration(cacheBytes: 2 * layout.stateBytes + 4 * layout.pageBytes, tokenBudget: 64))
        _ = try core.add(prompt: [1, 2, 3, 4, 5, 6], parameters: greedy(8))
        _ = try core.add(prompt: [7, 8, 9, 10, 11, 12], parameters: greedy(8))
        var preemptedAt: Int?
        for step in 0..<12 where preemptedAt == nil {
            let before = core.counters.preemptions
            let plan = core.schedule()
            if !plan.preempt.isEmpty {
                #expect(core.counters.preemptions == before + plan.preempt.count)
                #expect(core.runningSequenceCount < 2)
                preemptedAt = step
                break
            }
            var events: [(Int, EngineEvent)] = []
            let batch = core.prepare(plan, events: &events)
            if let logits = core.run(batch, events: &events) { _ = core.postprocess(batch, logits: logits) }
        }
        #expect(preemptedAt != nil, "the budget was meant to force preemption")
    }
}
