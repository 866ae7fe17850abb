// EngineCoreTests.swift: the engine end to end on the fake model (cache invariants under
// random load) and on the real tiny V4 model (batched = alone, exact prefix reuse).
import DeepSeekV4
import Engine
import Foundation
import ModelRuntime
import PagedCache
import Testing

let fixtureDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/tiny-hf").path

/// Runs the core until every request is done; returns each request's tokens per choice.
@discardableResult
func drain(_ core: EngineCore, maxSteps: Int = 100_000, onStep: ((Int) -> Void)? = nil) -> (tokens: [Int: [Int: [Int]]], events: [Int: [EngineEvent]]) {
    var tokens: [Int: [Int: [Int]]] = [:]
    var events: [Int: [EngineEvent]] = [:]
    var steps = 0
    while core.hasWork && steps < maxSteps {
        for (id, e) in core.step() {
            events[id, default: []].append(e)
            if case .token(let c, let s) = e { tokens[id, default: [:]][c, default: []].append(s.token) }
        }
        steps += 1
        onStep?(steps)
    }
    return (tokens, events)
}

func greedy(_ maxTokens: Int, n: Int = 1) -> SamplingParameters {
    var p = SamplingParameters()
    p.temperature = 0
    p.maxTokens = maxTokens
    p.ignoreEOS = true
    p.n = n
    return p
}

@Suite struct FakeModelEngineTests {
    @Test func randomMixLeavesNoLeakAndNoCorruption() throws {
        var rng = SeededGenerator(seed: 2024)
        let model = FakeModel()
        // A small budget forces eviction and preemption (snapshots are reclaimed first, so it
        // must be tight: the largest request, n = 3 over 43 positions, needs 296 of its 384 B).
        let layout = model.cacheLayout
        let budget = 16 * (layout.pageBytes + layout.stateBytes)
        let core = EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: budget, tokenBudget: 24, maxRunning: 12))
        // Shared prefixes make the prefix cache matter.
        let stems = (0..<5).map { s in (0..<(8 + 4 * s)).map { ($0 * 7 + s) % 49 + 1 } }
        var ids: [Int] = []
        var soloParams: [Int: ([Int], SamplingParameters)] = [:]
        var early: [(Int, EngineEvent)] = []
        for i in 0..<200 {
            let stem = stems[Int(rng.next() % 5)]
            let extra = (0..<Int(rng.next() % 9)).map { _ in Int(rng.next() % 49) + 1 }
            let prompt = Array(stem.prefix(Int(rng.next() % UInt64(stem.count)) + 1)) + extra
            var p = SamplingParameters()
            p.temperature = rng.next() % 2 == 0 ? 0 : 0.8
            p.seed = UInt64(i)
            p.maxTokens = Int(rng.next() % 12) + 1
            p.n = rng.next() % 4 == 0 ? 3 : 1
            let id = try core.add(prompt: prompt, parameters: p)
            ids.append(id)
            soloParams[id] = (prompt, p)
            // Interleave: run a few steps between arrivals, cancel some requests.
            if rng.next() % 3 == 0 { early += core.step() }
            if rng.next() % 10 == 0, let victim = ids.randomElement(using: &rng) { core.cancel(victim) }
        }
        var (tokens, events) = drain(core)
        // Fold in what the interleaved steps reported, in order before the drain's events.
        var earlyTokens: [Int: [Int: [Int]]] = [:]
        var earlyEvents: [Int: [EngineEvent]] = [:]
        for (id, e) in early {
            earlyEvents[id, default: []].append(e)
            if case .token(let c, let s) = e { earlyTokens[id, default: [:]][c, default: []].append(s.token) }
        }
        for (id, evs) in earlyEvents { events[id] = evs + (events[id] ?? []) }
        for (id, byChoice) in earlyTokens {
            for (c, t) in byChoice { tokens[id, default: [:]][c] = t + (tokens[id]?[c] ?? []) }
        }
        #expect(!core.hasWork)
        for (_, evs) in events {
            for e in evs { if case .failed(let err) = e { Issue.record("request failed: \(err)") } }
        }
        // Nothing leaks: with no request left, only the prefix cache holds blocks.
        #expect(core.cache.sequenceCount == 0)
        let cached = core.cache.prefix.count
        let snapshots = core.cache.prefix.snapshotCount
        #expect(core.cache.store.usedBytes == cached * layout.pageBytes + snapshots * layout.stateBytes)
        #expect(core.cache.store.count(.state) == 0 && core.cache.store.count(.snapshot) == snapshots)
        core.cache.clearPrefixCache()
        #expect(core.cache.store.usedBytes == 0)
        #expect(core.cache.store.liveBlockCount == 0)
        for k in core.cache.usage.kinds { #expect(k.usedBytes == 0, "\(k.kind) still holds \(k.usedBytes) bytes") }
        #expect(core.counters.preemptions > 0, "the budget was meant to force preemption")
        // Every request that was not cancelled produced what it produces alone.
        var compared = 0
        for id in ids {
            let evs = try #require(events[id], "request \(id) reported nothing")
            let cancelled = evs.contains { if case .finished(_, .cancelled, _) = $0 { return true } else { return false } }
            if cancelled { continue }
            let (prompt, p) = soloParams[id]!
            let solo = EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: 1 << 24))
            let sid = try solo.add(prompt: prompt, parameters: p)
            #expect(drain(solo).tokens[sid] == tokens[id], "request \(id)")
            compared += 1
        }
        #expect(compared > 100, "only \(compared) requests ran to the end")
    }

    /// Every completed choice equals the same request run alone with a roomy cache.
    @Test func batchingPreemptionAndPrefixReuseDoNotChangeTokens() throws {
        let model = FakeModel()
        let layout = model.cacheLayout
        let tight = EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: 12 * (layout.pageBytes + layout.stateBytes), tokenBudget: 10, maxRunning: 8))
        var requests: [(prompt: [Int], params: SamplingParameters)] = []
        for i in 0..<30 {
            var p = SamplingParameters()
            p.temperature = i % 2 == 0 ? 0 : 1
            p.seed = UInt64(100 + i)
            p.maxTokens = 5 + i % 7
            p.n = i % 5 == 0 ? 2 : 1
            p.ignoreEOS = true
            requests.append(((0..<(3 + i % 11)).map { ($0 * 3 + i % 4) % 40 + 1 }, p))
        }
        var idOf: [Int] = []
        for r in requests { idOf.append(try tight.add(prompt: r.prompt, parameters: r.params)) }
        let together = drain(tight).tokens
        for (i, r) in requests.enumerated() {
            let solo = EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: 1 << 24))
            let id = try solo.add(prompt: r.prompt, parameters: r.params)
            let alone = drain(solo).tokens[id]!
            #expect(together[idOf[i]]! == alone, "request \(i)")
        }
    }

    @Test func cancellationDuringPrefillFreesEverything() throws {
        let model = FakeModel()
        let core = EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: 1 << 20, tokenBudget: 8))
        let id = try core.add(prompt: (0..<400).map { $0 % 40 + 1 }, parameters: greedy(5))
        _ = core.step()
        _ = core.step()
        #expect(core.cache.sequenceCount == 1)
        core.cancel(id)
        let events = core.step()
        #expect(events.contains { $0.0 == id && $0.1 == .finished(choice: 0, reason: .cancelled, stopString: nil) })
        #expect(core.cache.sequenceCount == 0)
        core.cache.clearPrefixCache()
        #expect(core.cache.store.usedBytes == 0)
    }

    @Test func badRequestsAreRejectedBeforeWork() throws {
        let model = FakeModel(vocabSize: 50, maxPositions: 100)
        let core = EngineCore(model: model, configuration: EngineConfiguration(cacheBytes: 200))
        #expect(throws: EngineError.emptyPrompt) { try core.add(prompt: [], parameters: greedy(1)) }
        #expect(throws: EngineError.tokenOutOfRange(index: 1, id: 50, vocabSize: 50)) { try core.add(prompt: [1, 50], parameters: greedy(1)) }
        #expect(throws: EngineError.contextTooLong(promptTokens: 90, maxTokens: 20, maximum: 100)) {
            try core.add(prompt: Array(repeating: 1, count: 90), parameters: greedy(20))
        }
        // 90 + 9 - 1 = 98 positions: 25 pages of 16 B and a state of 8 B (snapshots reclaimable).
        #expect {
            try core.add(prompt: Array(repeating: 1, count: 90), parameters: greedy(9))
        } throws: { e in
            guard case EngineError.exceedsCache(let need, 200, _) = e else { return false }
            return need == 25 * 16 + 8 && "\(e)".contains("25 history pages of 16 B and 1 sequence states of 8 B, plus up to 25 reclaimable snapshots and 1 tail pages")
        }
        #expect(!core.hasWork)
        #expect(model.forwardCalls == 0)
    }

    @Test func stopTokensAndLength() throws {
        let model = FakeModel()
        let core = EngineCore(model: model, configuration: EngineConfiguration())
        var p = greedy(50)
        let probe = try core.add(prompt: [5, 6, 7], parameters: greedy(3))
        let first = drain(core).tokens[probe]![0]!
        p.stopTokenIds = [first[1]]
        let id = try core.add(prompt: [5, 6, 7], parameters: p)
        let (tokens, events) = drain(core)
        #expect(tokens[id]![0]! == Array(first.prefix(2)))
        #expect(events[id]!.last == .finished(choice: 0, reason: .stop, stopString: nil))
        let id2 = try core.add(prompt: [5, 6, 7], parameters: greedy(3))
        #expect(drain(core).events[id2]!.last == .finished(choice: 0, reason: .length, stopString: nil))
    }
}

@Suite(.serialized) struct RealModelEngineTests {
    static let model: DeepSeekV4Model = try! DeepSeekV4Model(directory: fixtureDir)

    func prompts() -> [[Int]] {
        (0..<8).map { i in (0..<(5 + i * 23)).map { ($0 * (i + 3) + i) % 250 + 2 } }
    }

    /// 8 concurrent greedy requests produce exactly the tokens each produces alone.
    @Test func concurrentGreedyRequestsMatchSoloRuns() throws {
        let m = Self.model
        let core = EngineCore(model: m, configuration: EngineConfiguration(cacheBytes: 64 << 20, tokenBudget: 64))
        let ids = try prompts().map { try core.add(prompt: $0, parameters: greedy(10)) }
        let together = drain(core).tokens
        for (i, p) in prompts().enumerated() {
            let solo = EngineCore(model: m, configuration: EngineConfiguration(cacheBytes: 64 << 20, tokenBudget: 1000))
            let id = try solo.add(prompt: p, parameters: greedy(10))
            #expect(drain(solo).tokens[id]![0]! == together[ids[i]]![0]!, "prompt \(i)")
        }
    }

    /// Logits of a batched step equal each sequence's logits computed alone (≤ 1e-5).
    @Test func batchedForwardEqualsSingleSequence() throws {
        let m = Self.model
        let ps = prompts()
        let states = ps.map { _ in m.makeState() }
        var batchedLast: [[Float]] = []
        // Batch: all prompts in one forward, via the CausalLM API on self-owned buffers.
        let layout = m.cacheLayout
        var buffers: [(UnsafeMutablePointer<Float>, PagePool, [Int])] = []
        for p in ps {
            let st = UnsafeMutablePointer<Float>.allocate(capacity: layout.stateFloats)
            m.initializeState(st)
            let n = layout.pageCount(forPositions: p.count)
            let pool = PagePool(layout: layout, capacity: n)
            buffers.append((st, pool, (0..<n).map { _ in pool.allocate()! }))
        }
        defer { for (s, _, _) in buffers { s.deallocate() } }
        let steps = zip(ps, buffers).map { SequenceStep(tokens: $0, position: 0, state: $1.0, pages: $1.1.table($1.2), logits: .last) }
        batchedLast = try m.forward(steps)
        for (i, p) in ps.enumerated() {
            let alone = try m.forward(tokens: p, state: states[i], lastOnly: true)
            let worst = zip(alone, batchedLast[i]).map { abs($0 - $1) }.max()!
            #expect(worst <= 1e-5, "prompt \(i): \(worst)")
        }
    }

    /// A second request sharing a 1,000-token prefix reuses ≥ 900 tokens, and its logits equal
    /// a cold run's.
    @Test func prefixReuseIsExact() throws {
        let m = Self.model
        let shared = (0..<1000).map { ($0 * 37 + 11) % 254 + 2 }
        let first = shared + [7, 8, 9]
        let second = shared + [100, 101, 102, 103]
        let cache = CacheManager(layout: m.cacheLayout, budgetBytes: 256 << 20, initializeState: m.initializeState)
        // Run the first request through the cache in 100-token chunks with page snapshots.
        func runThrough(_ tokens: [Int], chunk: Int) throws -> (SequenceID, cached: Int, last: [Float]) {
            let (seq, cached) = try cache.open(prompt: tokens)
            var pos = cached
            var last: [Float] = []
            while pos < tokens.count {
                let end = min(tokens.count, pos + chunk)
                try cache.reserve(seq, positions: end)
                let v = cache.view(seq)
                var steps: [SequenceStep] = []
                var snaps: [(Int, BlockID?)] = []
                var p = pos
                while p < end {
                    let boundary = (p / m.cacheLayout.pageTokens + 1) * m.cacheLayout.pageTokens
                    let e = min(end, boundary)
                    let snap = e == boundary ? cache.allocateSnapshot() : nil
                    steps.append(SequenceStep(tokens: Array(tokens[p..<e]), position: p, state: v.state, pages: v.pages,
                                              logits: e == end ? .last : .none, snapshot: snap.map { cache.pointer($0) }))
                    snaps.append((e, snap))
                    p = e
                }
                let out = try m.forward(steps)
                var q = pos
                for (e, snap) in snaps {
                    cache.commit(seq, tokens: Array(tokens[q..<e]), snapshot: snap)
                    q = e
                }
                last = out.last!
                pos = end
            }
            return (seq, cached, last)
        }
        let (s1, c1, _) = try runThrough(first, chunk: 100)
        #expect(c1 == 0)
        let (s2, c2, warm) = try runThrough(second, chunk: 100)
        #expect(c2 >= 900, "cached \(c2)")
        let cold = try m.forward(tokens: second, state: m.makeState(), lastOnly: true)
        #expect(warm == cold, "logits after a prefix hit must be bit-identical to a cold run")
        cache.close(s1)
        cache.close(s2)
        cache.clearPrefixCache()
        #expect(cache.store.usedBytes == 0)
    }

    /// Must-show 2 through the engine: request B shares a 1,000-token prefix with finished
    /// request A, reports >= 900 cached tokens, and every logits row it gets (hence its greedy
    /// tokens and logprobs) is bit-identical to B run cold on a fresh engine.
    @Test func engineReusesAThousandTokenPrefixBitExactly() throws {
        let shared = (0..<1000).map { ($0 * 37 + 11) % 254 + 2 }
        var p = greedy(4)
        p.logprobs = true
        p.topLogprobs = 5
        let warmModel = RecordingModel(Self.model)
        let warm = EngineCore(model: warmModel, configuration: EngineConfiguration(cacheBytes: 256 << 20, tokenBudget: 256))
        let a = try warm.add(prompt: shared + [7, 8, 9], parameters: greedy(2))
        #expect(drain(warm).events[a]!.first == .started(promptTokens: 1003, cachedTokens: 0))
        let rowsBeforeB = warmModel.rows.count
        let b = try warm.add(prompt: shared + [100, 101, 102, 103], parameters: p)
        let (warmTokens, warmEvents) = drain(warm)
        guard let bFirst = warmEvents[b]?.first, case .started(1004, let cached) = bFirst else {
            Issue.record("B did not start first: \(warmEvents[b]!)")
            return
        }
        #expect(cached >= 900, "cached \(cached)")
        #expect(warm.counters.cachedPromptTokens == cached)

        let coldModel = RecordingModel(Self.model)
        let cold = EngineCore(model: coldModel, configuration: EngineConfiguration(cacheBytes: 256 << 20, tokenBudget: 256))
        let c = try cold.add(prompt: shared + [100, 101, 102, 103], parameters: p)
        let (coldTokens, coldEvents) = drain(cold)
        #expect(coldEvents[c]!.first == .started(promptTokens: 1004, cachedTokens: 0))
        let warmRows = Array(warmModel.rows[rowsBeforeB...])
        #expect(warmRows.count == 4 && coldModel.rows.count == 4)
        #expect(warmRows == coldModel.rows, "logits after a prefix hit must be bit-identical to a cold run")
        #expect(warmTokens[b]! == coldTokens[c]!)
        func sampled(_ evs: [EngineEvent]) -> [SampledToken] { evs.compactMap { if case .token(_, let s) = $0 { s } else { nil } } }
        #expect(sampled(warmEvents[b]!) == sampled(coldEvents[c]!))
        #expect(sampled(coldEvents[c]!).allSatisfy { $0.top.count == 5 })
        // The hit is visible per cache kind: the shared pages' CSA entries were served.
        let csa = try #require(warm.cache.usage.kind(.csaEntries))
        #expect(csa.prefixHitBytes == cached / Self.model.cacheLayout.pageTokens * Self.model.cacheLayout.pageBytes(of: .csaEntries))
    }

    /// n > 1 shares the prompt: forked choices with the same seed as separate requests agree.
    @Test func nGreaterThanOneSharesThePrompt() throws {
        let m = Self.model
        let core = EngineCore(model: m, configuration: EngineConfiguration(cacheBytes: 64 << 20))
        var p = greedy(6, n: 3)
        p.temperature = 0.9
        p.seed = 5
        let prompt = Array(prompts()[3])
        let id = try core.add(prompt: prompt, parameters: p)
        let (tokens, events) = drain(core)
        #expect(tokens[id]!.count == 3)
        #expect(Set(tokens[id]!.values).count > 1, "seeded choices should differ at temperature 0.9")
        #expect(events[id]!.first == .started(promptTokens: prompt.count, cachedTokens: 0))
        // The prompt was computed once, not once per choice: each choice then fed back 5 tokens.
        #expect(core.counters.computedTokens == prompt.count + 3 * 5)
        // Same request again: same tokens for every choice (seeded), and the prompt now hits the cache.
        let id2 = try core.add(prompt: prompt, parameters: p)
        let (tokens2, events2) = drain(core)
        #expect(tokens2[id2]! == tokens[id]!)
        let expected = (prompt.count - 1) / m.cacheLayout.pageTokens * m.cacheLayout.pageTokens
        #expect(expected > 0, "the prompt must cover a full page for this test to mean anything")
        #expect(events2[id2]!.first == .started(promptTokens: prompt.count, cachedTokens: expected))
    }
}
