// ScriptedModel.swift: a CausalLM that answers every prompt with a fixed token script (then
// end-of-sequence). Used to test the server end to end where exact outputs matter (tool
// calls, reasoning, stop strings) without depending on what random weights generate.
//
// Its state is how much of the script the sequence currently ends with, so its output is a
// pure function of the token history: prefix-cache hits, forks and preemption behave as they
// do for a real model.
import ModelRuntime

public final class ScriptedModel: CausalLM, @unchecked Sendable {
    public let vocabSize: Int
    public let maxPositions: Int
    public let cacheLayout = CacheLayout(pageTokens: 16, pageFloats: 1, stateFloats: 1)
    public let eosTokenIds: [Int]
    let script: [Int]

    /// - Parameters:
    ///   - script: the tokens every completion consists of, in order; EOS follows.
    public init(script: [Int], vocabSize: Int, eos: Int, maxPositions: Int = 1 << 20) {
        self.script = script
        self.vocabSize = vocabSize
        self.maxPositions = maxPositions
        eosTokenIds = [eos]
    }

    public func initializeState(_ state: UnsafeMutablePointer<Float>) { state[0] = 0 }

    public func forward(_ steps: [SequenceStep]) throws -> [[Float]] {
        steps.map { s in
            var rows: [[Float]] = []
            for t in s.tokens {
                // Length of the script prefix the sequence now ends with.
                let j = Int(s.state[0])
                s.state[0] = Float(j < script.count && script[j] == t ? j + 1 : (script.first == t ? 1 : 0))
                if s.logits == .all { rows.append(logits(Int(s.state[0]))) }
            }
            s.snapshot?.update(from: s.state, count: 1)
            switch s.logits {
            case .none: return []
            case .last: return logits(Int(s.state[0]))
            case .all: return rows.flatMap { $0 }
            }
        }
    }

    func logits(_ j: Int) -> [Float] {
        var l = [Float](repeating: -30, count: vocabSize)
        l[j < script.count ? script[j] : eosTokenIds[0]] = 30
        return l
    }
}
