// SamplerTests.swift: sampling rules and parameter validation.
import Engine
import Testing

@Suite struct SamplerTests {
    let logits: [Float] = [0.5, 2.0, -1.0, 1.5, 0.0]

    func sample(_ p: SamplingParameters, seed: UInt64 = 1, seen: Set<Int> = [], counts: [Int: Int] = [:]) -> SampledToken {
        var rng = SeededGenerator(seed: seed)
        return Sampler.sample(logits: logits, parameters: p, seen: seen, generatedCounts: counts, rng: &rng)
    }

    @Test func greedyPicksArgmaxWithLogprobs() {
        var p = SamplingParameters()
        p.temperature = 0
        p.topLogprobs = 3
        let s = sample(p)
        #expect(s.token == 1)
        #expect(s.top.map(\.token) == [1, 3, 0])
        let z = logits.map { exp(Double($0)) }.reduce(0, +)
        #expect(abs(Double(s.logprob) - (2.0 - log(z))) < 1e-5)
    }

    @Test func topKOneIsGreedyAndSeedsRepeat() {
        var p = SamplingParameters()
        p.topK = 1
        #expect(sample(p, seed: 7).token == 1)
        var q = SamplingParameters()
        q.temperature = 1.3
        let a = (0..<20).map { sample(q, seed: UInt64($0)).token }
        let b = (0..<20).map { sample(q, seed: UInt64($0)).token }
        #expect(a == b)
        #expect(Set(a).count > 1)
    }

    @Test func samplingFollowsTheDistribution() {
        var p = SamplingParameters()
        p.temperature = 1
        var rng = SeededGenerator(seed: 42)
        var counts = [Int](repeating: 0, count: 5)
        for _ in 0..<20000 { counts[Sampler.sample(logits: logits, parameters: p, seen: [], generatedCounts: [:], rng: &rng).token] += 1 }
        let z = logits.map { exp(Double($0)) }.reduce(0, +)
        for i in 0..<5 {
            let expected = exp(Double(logits[i])) / z
            #expect(abs(Double(counts[i]) / 20000 - expected) < 0.02)
        }
    }

    @Test func topPAndMinPTruncate() {
        var p = SamplingParameters()
        p.topP = 0.5  // token 1 alone has ~0.48 of the mass; 1 and 3 cover more than 0.5
        let tokens = Set((0..<200).map { sample(p, seed: UInt64($0)).token })
        #expect(tokens == [1, 3])
        var m = SamplingParameters()
        m.minP = 0.5  // keeps tokens with p >= 0.5·p(top): 1 and 3 (e^-0.5 = 0.61)
        #expect(Set((0..<200).map { sample(m, seed: UInt64($0)).token }) == [1, 3])
    }

    @Test func penaltiesAndBias() {
        var p = SamplingParameters()
        p.temperature = 0
        p.logitBias = [4: 100]
        #expect(sample(p).token == 4)
        var q = SamplingParameters()
        q.temperature = 0
        q.frequencyPenalty = 1
        #expect(sample(q, counts: [1: 1]).token == 3)  // 2.0 - 1 < 1.5
        var r = SamplingParameters()
        r.temperature = 0
        r.repetitionPenalty = 2
        #expect(sample(r, seen: [1]).token == 3)  // 2.0 / 2 < 1.5
        var s = SamplingParameters()
        s.temperature = 0
        s.presencePenalty = 0.6
        #expect(sample(s, counts: [1: 5]).token == 3)
    }

    static func invalid() -> [(String, SamplingParameters)] {
        var out: [(String, SamplingParameters)] = []
        func add(_ name: String, _ edit: (inout SamplingParameters) -> Void) {
            var p = SamplingParameters()
            edit(&p)
            out.append((name, p))
        }
        add("temperature") { $0.temperature = -1 }
        add("top_p") { $0.topP = 0 }
        add("top_p") { $0.topP = 1.5 }
        add("max_tokens") { $0.maxTokens = 0 }
        add("n") { $0.n = 99 }
        add("logit_bias") { $0.logitBias = [999: 1] }
        add("top_logprobs") { $0.topLogprobs = 50 }
        add("stop") { $0.stop = [""] }
        add("min_p") { $0.minP = 2 }
        return out
    }

    @Test func invalidValuesAreNamed() {
        for (name, p) in Self.invalid() {
            #expect {
                try p.validate(vocabSize: 100)
            } throws: { e in
                guard case EngineError.invalidParameter(let n, _) = e else { return false }
                return n == name
            }
        }
    }
}

import Foundation
