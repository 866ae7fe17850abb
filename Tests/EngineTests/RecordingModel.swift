// RecordingModel.swift: wraps a CausalLM, keeps every logits row it returns and runs a hook
// on each forward (where a step's allocations are all made), so tests can compare logits
// bit for bit and observe the cache at its fullest.
import Foundation
import ModelRuntime

final class RecordingModel: CausalLM, @unchecked Sendable {
    let base: any CausalLM
    /// Non-empty logits rows in the order they were returned.
    private(set) var rows: [[Float]] = []
    private(set) var forwardCalls = 0
    /// Called before each forward.
    var onForward: (() -> Void)?

    init(_ base: any CausalLM) { self.base = base }

    var vocabSize: Int { base.vocabSize }
    var maxPositions: Int { base.maxPositions }
    var cacheLayout: CacheLayout { base.cacheLayout }
    var eosTokenIds: [Int] { base.eosTokenIds }
    func initializeState(_ state: UnsafeMutablePointer<Float>) { base.initializeState(state) }

    func forward(_ steps: [SequenceStep]) throws -> [[Float]] {
        forwardCalls += 1
        onForward?()
        let out = try base.forward(steps)
        rows += out.filter { !$0.isEmpty }
        return out
    }
}
