// TurnResumeTests.swift: a conversation's next turn resumes where the previous one stopped
// (tails: snapshots at the end of a prompt and of an output, inside a page), bit-exactly.
import DeepSeekV4
import Engine
import ModelRuntime
import PagedCache
import Testing

@Suite(.serialized) struct TurnResumeTests {
    static var model: DeepSeekV4Model { RealModelEngineTests.model }

    func started(_ events: [EngineEvent]?) -> (prompt: Int, cached: Int)? {
        guard case .started(let p, let c)? = events?.first else { return nil }
        return (p, c)
    }

    /// Turn 2 = turn 1's prompt + its answer + a new message: it resumes at the end of turn 1's
    /// computed output (the last sampled token is never fed back), not at the last full page,
    /// and every logits row it gets equals the same request run cold.
    @Test func nextTurnResumesAtTheEndOfTheOutputBitExactly() throws {
        let pT = Self.model.cacheLayout.pageTokens
        let prompt = (0..<(pT + 57)).map { ($0 * 29 + 5) % 250 + 2 }
        let warmModel = RecordingModel(Self.model)
        let warm = EngineCore(model: warmModel, configuration: EngineConfiguration(cacheBytes: 256 << 20, tokenBudget: 64))
        let a = try warm.add(prompt: prompt, parameters: greedy(9))
        let first = drain(warm)
        let answer = try #require(first.tokens[a]?[0])
        #expect(answer.count == 9)
        #expect(warm.cache.prefix.tailCount == 2, "a tail at the prompt's end and one at the output's end")

        let next = prompt + answer + [40, 41, 42, 43, 44]
        var p = greedy(5)
        p.logprobs = true
        p.topLogprobs = 3
        let rowsBefore = warmModel.rows.count
        let computedBefore = warm.counters.computedTokens
        let b = try warm.add(prompt: next, parameters: p)
        let second = drain(warm)
        let hit = try #require(started(second.events[b]))
        #expect(hit.cached == prompt.count + answer.count - 1, "cached \(hit.cached) of \(next.count)")
        // Only the uncached prompt tokens and the fed-back outputs were computed.
        #expect(warm.counters.computedTokens - computedBefore == next.count - hit.cached + 4)

        let coldModel = RecordingModel(Self.model)
        let cold = EngineCore(model: coldModel, configuration: EngineConfiguration(cacheBytes: 256 << 20, tokenBudget: 64))
        let c = try cold.add(prompt: next, parameters: p)
        let coldRun = drain(cold)
        #expect(started(coldRun.events[c])?.cached == 0)
        #expect(Array(warmModel.rows[rowsBefore...]) == coldModel.rows, "logits after a tail hit must equal a cold run's")
        #expect(second.tokens[b]! == coldRun.tokens[c]!)
    }

    /// A prompt that shares only the previous prompt resumes at that prompt's end (a tail
    /// inside a page), with the same tokens as cold.
    @Test func anotherContinuationResumesAtThePromptsEnd() throws {
        let prompt = (0..<70).map { ($0 * 13 + 3) % 250 + 2 }
        let core = EngineCore(model: Self.model, configuration: EngineConfiguration(cacheBytes: 256 << 20))
        _ = try core.add(prompt: prompt, parameters: greedy(3))
        drain(core)
        let other = prompt + [9, 9, 9]
        let b = try core.add(prompt: other, parameters: greedy(4))
        let run = drain(core)
        #expect(started(run.events[b])?.cached == prompt.count)
        let cold = EngineCore(model: Self.model, configuration: EngineConfiguration(cacheBytes: 256 << 20))
        let c = try cold.add(prompt: other, parameters: greedy(4))
        #expect(drain(cold).tokens[c]! == run.tokens[b]!)
    }

    /// `warm(prompt:)` samples nothing, counts as no request, and leaves the prompt's end
    /// cached for a longer prompt; it resumes from the previous output's end when it can.
    @Test func warmComputesOnlyWhatIsMissingAndSamplesNothing() throws {
        let prompt = (0..<40).map { ($0 * 17 + 1) % 250 + 2 }
        let core = EngineCore(model: Self.model, configuration: EngineConfiguration(cacheBytes: 256 << 20))
        let a = try core.add(prompt: prompt, parameters: greedy(6))
        let answer = try #require(drain(core).tokens[a]?[0])
        // What a template renders back: the answer with its last token re-rendered, plus an end token.
        let rendered = prompt + answer.dropLast() + [77, 1]
        let before = core.counters
        let w = try core.warm(prompt: rendered)
        let run = drain(core)
        #expect(run.tokens[w] == nil)
        #expect(run.events[w]!.last == .finished(choice: 0, reason: .length, stopString: nil))
        #expect(started(run.events[w])?.cached == prompt.count + answer.count - 1)
        #expect(core.counters.computedTokens - before.computedTokens == 2)
        #expect(core.counters.promptTokens == before.promptTokens && core.counters.generatedTokens == before.generatedTokens)
        let b = try core.add(prompt: rendered + [5, 6], parameters: greedy(2))
        #expect(started(drain(core).events[b])?.cached == rendered.count)
    }

    /// Tails are evictable like any snapshot: a tight budget runs, and an idle cache empties.
    @Test func tailsAreEvictedUnderPressureAndReleasedWhenCleared() throws {
        let layout = Self.model.cacheLayout
        let budget = 3 * layout.stateBytes + 8 * layout.pageBytes
        let core = EngineCore(model: Self.model, configuration: EngineConfiguration(cacheBytes: budget, tokenBudget: 64))
        for i in 0..<12 {
            let prompt = (0..<(20 + i * 11)).map { ($0 * (i + 5) + i) % 250 + 2 }
            _ = try core.add(prompt: prompt, parameters: greedy(3))
            drain(core)
            #expect(core.cache.store.usedBytes <= budget)
        }
        #expect(core.cache.prefix.tailCount > 0)
        core.cache.clearPrefixCache()
        #expect(core.cache.store.usedBytes == 0)
        #expect(core.cache.prefix.tailCount == 0)
    }
}
