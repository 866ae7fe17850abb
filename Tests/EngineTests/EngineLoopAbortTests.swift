// EngineLoopAbortTests.swift: EngineLoop.abort fails every request at once, even while the
// engine thread is stuck inside a step (as when an expert-parallel worker rank is lost).
import Dispatch
import Engine
import ModelRuntime
import Testing

/// ScriptedModel whose forward passes block on `gate` once `blocking` is set.
final class GatedModel: CausalLM, @unchecked Sendable {
    let base = ScriptedModel(script: Array(repeating: 5, count: 64), vocabSize: 20, eos: 1)
    let gate = DispatchSemaphore(value: 0)
    let entered = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var blocking = false
    var cacheLayout: CacheLayout { base.cacheLayout }
    var vocabSize: Int { base.vocabSize }
    var maxPositions: Int { base.maxPositions }
    var eosTokenIds: [Int] { base.eosTokenIds }
    func initializeState(_ state: UnsafeMutablePointer<Float>) { base.initializeState(state) }
    func forward(_ steps: [SequenceStep]) throws -> [[Float]] {
        if blocking {
            entered.signal()
            gate.wait()
        }
        return try base.forward(steps)
    }
}

@Suite struct EngineLoopAbortTests {
    @Test func abortFailsEveryRequestWhileTheEngineIsStuckInAStep() async throws {
        let model = GatedModel()
        model.blocking = true
        let loop = EngineLoop(model: model, configuration: EngineConfiguration(cacheBytes: 1 << 20))
        var p = SamplingParameters()
        p.temperature = 0
        p.maxTokens = 8
        let first = try loop.submit(prompt: [3, 4], parameters: p)
        let second = try loop.submit(prompt: [3, 4, 5], parameters: p)
        model.entered.wait()  // the engine thread is now inside forward, stuck
        loop.abort(.unavailable(reason: "worker lost"))
        for events in [first.events, second.events] {
            var last: EngineEvent?
            for await e in events { last = e }
            #expect(last == .failed(.unavailable(reason: "worker lost")))
        }
        #expect(throws: EngineError.shuttingDown) { try loop.submit(prompt: [3], parameters: p) }
        model.blocking = false
        model.gate.signal()  // let the thread finish its step and stop
        loop.shutdown()
    }
}
