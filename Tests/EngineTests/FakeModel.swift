// FakeModel.swift: a CausalLM whose outputs depend on the exact token history, and which
// checks on every step that its pages and state hold exactly that history. Any cache bug
// (wrong prefix reuse, bad fork, lost page) makes it throw or change its tokens.
import Foundation
import ModelRuntime

struct FakeModelError: Error, CustomStringConvertible {
    let description: String
}

final class FakeModel: CausalLM, @unchecked Sendable {
    let vocabSize: Int
    let maxPositions: Int
    let cacheLayout: CacheLayout
    let eosTokenIds: [Int]
    private let lock = NSLock()
    private(set) var forwardCalls = 0
    private(set) var batchSizes: [Int] = []

    init(vocabSize: Int = 50, maxPositions: Int = 4096, pageTokens: Int = 4, eos: [Int] = [0]) {
        self.vocabSize = vocabSize
        self.maxPositions = maxPositions
        cacheLayout = CacheLayout(pageTokens: pageTokens, pageFloats: pageTokens, stateFloats: 2)
        eosTokenIds = eos
    }

    func initializeState(_ state: UnsafeMutablePointer<Float>) {
        state[0] = 0
        state[1] = 0
    }

    static func mix(_ h: Float, _ t: Int) -> Float {
        // Exact in fp32 for small values: keeps a hash below 2^20.
        Float((Int(h) &* 31 &+ t &+ 7) % 1_000_003)
    }

    func forward(_ steps: [SequenceStep]) throws -> [[Float]] {
        lock.lock()
        forwardCalls += 1
        batchSizes.append(steps.count)
        lock.unlock()
        var out: [[Float]] = []
        for s in steps {
            let P = cacheLayout.pageTokens
            // The state must summarise exactly positions 0..<position, which the pages hold.
            guard Int(s.state[0]) == s.position else {
                throw FakeModelError(description: "state says \(Int(s.state[0])) positions, step starts at \(s.position)")
            }
            var h: Float = 0
            for p in 0..<s.position { h = Self.mix(h, Int(s.pages.region(page: p / P, offset: 0, floats: P)[p % P])) }
            guard h == s.state[1] else { throw FakeModelError(description: "pages disagree with state at position \(s.position)") }
            for (i, t) in s.tokens.enumerated() {
                let p = s.position + i
                s.pages.region(page: p / P, offset: 0, floats: P)[p % P] = Float(t)
                s.state[1] = Self.mix(s.state[1], t)
                s.state[0] += 1
            }
            s.snapshot?.update(from: s.state, count: 2)
            switch s.logits {
            case .none: out.append([])
            case .all, .last:
                // A deterministic function of the history hash.
                let hv = Int(s.state[1])
                out.append((0..<vocabSize).map { v in Float(((hv &* 2_654_435_761) ^ (v &* 40_503)) % 1009) / 100 })
            }
        }
        return out
    }
}
