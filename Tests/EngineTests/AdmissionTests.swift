// AdmissionTests.swift: a request's exact cache footprint (n > 1 sharing the prompt's pages,
// boundary snapshots), rejection before any work of what can never fit, and fair admission
// over time on a manual clock.
import Engine
import ModelRuntime
import PagedCache
import Testing

@Suite struct AdmissionTests {
    /// Runs one request alone; returns the cache's peak bytes (seen at each forward, when the
    /// step's pages and snapshots are all allocated) and the request's events.
    func peak(prompt: [Int], parameters p: SamplingParameters, budget: Int) throws -> (peak: Int, events: [EngineEvent], core: EngineCore) {
        let model = RecordingModel(FakeModel())
        let core = EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: budget, tokenBudget: 5))
        var peak = 0
        model.onForward = { [unowned core] in peak = max(peak, core.cache.store.usedBytes) }
        let id = try core.add(prompt: prompt, parameters: p)
        let (_, events) = drain(core, maxSteps: 1000)
        return (peak, events[id] ?? [], core)
    }

    func sampled(_ maxTokens: Int, n: Int) -> SamplingParameters {
        var p = greedy(maxTokens, n: n)
        p.temperature = 1
        p.seed = 4
        return p
    }

    @Test func footprintCountsSharedPromptPagesOnceAndEverySnapshot() throws {
        let m = FakeModel()  // 4 tokens per page of 16 B; states and snapshots of 8 B
        let core = EngineCore(model: m, configuration: EngineConfiguration())
        // 10 + 7 - 1 = 16 positions: 4 pages per sequence, the prompt's 2 full pages shared.
        let f = core.cache.footprint(promptTokens: 10, maxTokens: 7, n: 3)
        #expect(f.pages == 4 + 2 * 2)
        #expect(f.states == 3)
        // Every boundary, and the prompt's end (10 is inside a page): a tail, with its page.
        #expect(f.snapshots == 4 + 2 * 2 + 1 && f.tailPages == 1)
        #expect(f.bytes == 8 * 16 + 3 * 8)
        #expect(f.peakBytes == 8 * 16 + 12 * 8 + 16)
        let one = core.cache.footprint(promptTokens: 10, maxTokens: 7, n: 1)
        #expect(one.pages == 4 && one.states == 1 && one.snapshots == 5)
        // A prompt ending on a boundary takes no tail; one answered in one token keeps no page copy.
        #expect(core.cache.footprint(promptTokens: 12, maxTokens: 7, n: 1).tailPages == 0)
        #expect(core.cache.footprint(promptTokens: 9, maxTokens: 1, n: 1).tailPages == 0)
    }

    /// The footprint is exact: a cold uninterrupted run with room peaks at exactly its pages,
    /// states and snapshots, and a budget of exactly its pages and states (snapshots
    /// reclaimed as it goes) runs it to the end.
    @Test(arguments: [(10, 7, 3), (12, 5, 2), (9, 1, 1), (3, 14, 4)])
    func coldRunPeaksAtItsFootprint(promptTokens: Int, maxTokens: Int, n: Int) throws {
        let prompt = (0..<promptTokens).map { ($0 * 13 + 5) % 47 + 1 }
        let p = sampled(maxTokens, n: n)
        let f = EngineCore(model: FakeModel(), configuration: EngineConfiguration()).cache.footprint(
            promptTokens: promptTokens, maxTokens: maxTokens, n: n)
        let roomy = try peak(prompt: prompt, parameters: p, budget: 1 << 20)
        #expect(roomy.peak == f.peakBytes, "footprint \(f)")
        let exact = try peak(prompt: prompt, parameters: p, budget: f.bytes)
        #expect(!exact.core.hasWork, "a budget of exactly the footprint must not stall")
        let finished = exact.events.filter { if case .finished(_, .length, _) = $0 { true } else { false } }
        #expect(finished.count == n)
    }

    @Test func requestThatCanNeverFitIsRejectedBeforeAnyWork() throws {
        let model = FakeModel()
        let probe = EngineCore(model: model, configuration: EngineConfiguration())
        let one = probe.cache.footprint(promptTokens: 10, maxTokens: 7, n: 1).bytes
        let three = probe.cache.footprint(promptTokens: 10, maxTokens: 7, n: 3).bytes
        let core = EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: one))
        let prompt = Array(1...10)
        // n = 3 needs more than n = 1 fits: refused at once, naming what it needs.
        #expect {
            try core.add(prompt: prompt, parameters: sampled(7, n: 3))
        } throws: { e in
            guard case EngineError.exceedsCache(three, one, let detail) = e else { return false }
            return detail.contains("8 history pages") && "\(e)".contains("lower max_tokens or n")
        }
        // One more generated token crosses a page: refused too.
        #expect(throws: EngineError.self) { try core.add(prompt: prompt, parameters: sampled(8, n: 1)) }
        #expect(!core.hasWork && model.forwardCalls == 0 && core.cache.store.usedBytes == 0)
        // What fits exactly is accepted and runs.
        let id = try core.add(prompt: prompt, parameters: sampled(7, n: 1))
        #expect(drain(core).events[id]!.last == .finished(choice: 0, reason: .length, stopString: nil))
    }

    // MARK: - Fair admission over time

    /// Steps `core`, advancing the clock a second per step; returns the step (1-based) at
    /// which `id` started, or nil.
    func startStep(of id: Int, core: EngineCore, clock: ManualClock, maxSteps: Int = 500) -> Int? {
        for step in 1...maxSteps {
            clock.advance(by: .seconds(1))
            for (rid, e) in core.step() where rid == id { if case .started = e { return step } }
        }
        return nil
    }

    @Test func aWaitingRequestIsNotStarvedByALongPrefill() throws {
        for delay in [nil, Duration.seconds(2)] {
            let clock = ManualClock()
            let core = EngineCore(
                model: FakeModel(), configuration: EngineConfiguration(cacheBytes: 1 << 20, tokenBudget: 8, maxQueueDelay: delay),
                clock: clock)
            _ = try core.add(prompt: (0..<400).map { $0 % 40 + 1 }, parameters: greedy(2))
            _ = core.step()
            let late = try core.add(prompt: [4, 5, 6], parameters: greedy(2))
            let started = try #require(startStep(of: late, core: core, clock: clock))
            if let delay {
                // Overdue once it has waited more than 2 s: the third step after arrival.
                #expect(started == 3, "with max delay \(delay)")
                #expect(core.counters.maxQueueWait == .seconds(3))
            } else {
                // Strict first-come first-served: only once the 400-token prompt is in (8 per step).
                #expect(started >= 49, "started at step \(started)")
            }
            drain(core)
            #expect(core.counters.admittedRequests == 2)
        }
    }
}
