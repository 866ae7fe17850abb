// Sampler.swift: turns a logits row into a token, with penalties, bias, temperature,
// top-k, top-p, min-p and log-probabilities.
import CKernels
import Foundation

/// A token and its log-probability.
public struct TokenLogprob: Sendable, Equatable {
    public let token: Int
    public let logprob: Float
}

/// xoshiro256**: a small, fast generator with an explicit seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func next() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (next(), next(), next(), next())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

public struct SampledToken: Sendable, Equatable {
    public let token: Int
    /// Log-probability of the chosen token (after penalties and bias, before temperature).
    public let logprob: Float
    public let top: [TokenLogprob]
}

public enum Sampler {
    /// Chooses the next token from `logits` (`[vocab]`).
    /// - Parameters:
    ///   - seen: every token of prompt + output (repetition penalty).
    ///   - generatedCounts: occurrences of each generated token (presence/frequency penalties).
    public static func sample(
        logits input: [Float], parameters p: SamplingParameters, seen: Set<Int>, generatedCounts: [Int: Int],
        rng: inout SeededGenerator, constraint: (any TokenConstraint)? = nil, eos: Set<Int> = []
    ) -> SampledToken {
        var logits = input
        if p.repetitionPenalty != 1 {
            for t in seen where t < logits.count {
                logits[t] = logits[t] > 0 ? logits[t] / p.repetitionPenalty : logits[t] * p.repetitionPenalty
            }
        }
        if p.presencePenalty != 0 || p.frequencyPenalty != 0 {
            for (t, n) in generatedCounts where t < logits.count {
                logits[t] -= p.presencePenalty + p.frequencyPenalty * Float(n)
            }
        }
        for (t, b) in p.logitBias { logits[t] += b }

        // Log-probabilities of the adjusted distribution.
        let logZ = Float(logits.withUnsafeBufferPointer { ck_logsumexp($0.baseAddress, $0.count) })
        func logprob(_ t: Int) -> Float { logits[t] - logZ }

        var chosen: Int
        if let c = constraint {
            chosen = constrained(logits: logits, parameters: p, rng: &rng, constraint: c, eos: eos)
        } else if p.temperature == 0 {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            chosen = best
        } else {
            chosen = draw(logits: logits, parameters: p, rng: &rng)
        }
        var top: [TokenLogprob] = []
        if p.topLogprobs > 0 {
            let k = min(p.topLogprobs, logits.count)
            let order = topIndices(logits, k)
            top = order.map { TokenLogprob(token: $0, logprob: logprob($0)) }
        }
        return SampledToken(token: chosen, logprob: logprob(chosen), top: top)
    }

    /// Indices of the k largest values, largest first (ties: lower index first).
    static func topIndices(_ v: [Float], _ k: Int) -> [Int] {
        if k >= v.count { return v.indices.sorted { v[$0] > v[$1] || (v[$0] == v[$1] && $0 < $1) } }
        var heap: [Int] = []  // min-heap by (value, -index) kept small: k is small
        heap.reserveCapacity(k + 1)
        for i in v.indices {
            if heap.count < k {
                heap.append(i)
                if heap.count == k { heap.sort { v[$0] > v[$1] || (v[$0] == v[$1] && $0 < $1) } }
            } else if v[i] > v[heap[k - 1]] {
                var j = k - 1
                heap[j] = i
                while j > 0, v[heap[j]] > v[heap[j - 1]] || (v[heap[j]] == v[heap[j - 1]] && heap[j] < heap[j - 1]) {
                    heap.swapAt(j, j - 1)
                    j -= 1
                }
            }
        }
        return heap
    }

    /// The best (greedy) or a sampled token among those the constraint accepts; EOS only
    /// when the constraint can finish. Falls back to EOS when nothing is acceptable.
    static func constrained(
        logits input: [Float], parameters p: SamplingParameters, rng: inout SeededGenerator, constraint c: any TokenConstraint, eos: Set<Int>
    ) -> Int {
        func ok(_ t: Int) -> Bool { eos.contains(t) ? c.canFinish : c.canAccept(t) }
        if let candidates = c.candidateTokens() {
            // Few possibilities: check them all and choose among the valid ones.
            var valid = candidates.filter { $0 < input.count && c.canAccept($0) }
            if c.canFinish { valid += eos }
            guard !valid.isEmpty else { return eos.first ?? 0 }
            if p.temperature == 0 { return valid.max { input[$0] < input[$1] || (input[$0] == input[$1] && $0 > $1) }! }
            let mx = valid.map { input[$0] }.max()!
            let w = valid.map { Double(exp((input[$0] - mx) / p.temperature)) }
            var u = rng.unit() * w.reduce(0, +)
            for (i, t) in valid.enumerated() {
                u -= w[i]
                if u < 0 { return t }
            }
            return valid.last!
        }
        var logits = input
        for _ in 0..<64 {
            // Sampling: draw, reject, redraw. Greedy: the best remaining token.
            var t = 0
            if p.temperature > 0 {
                t = draw(logits: logits, parameters: p, rng: &rng)
            } else {
                for i in 1..<logits.count where logits[i] > logits[t] { t = i }
            }
            if logits[t] == -.infinity { break }
            if ok(t) { return t }
            logits[t] = -.infinity
        }
        // Greedy, or many rejections: the most likely acceptable token.
        let order = logits.indices.filter { logits[$0] > -.infinity }.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        return order.first(where: ok) ?? eos.first ?? order.first ?? 0
    }

    static func draw(logits: [Float], parameters p: SamplingParameters, rng: inout SeededGenerator) -> Int {
        let invT = 1 / p.temperature
        // Candidates: top-k, or every token whose probability is not negligible (e^-40 of
        // the top one: below float resolution of any sum), sorted by logit.
        var candidates: [Int]
        if p.topK > 0 && p.topK < logits.count {
            candidates = topIndices(logits, p.topK)
        } else {
            let cutoff = (logits.max() ?? 0) - 40 * p.temperature
            candidates = logits.indices.filter { logits[$0] >= cutoff }
            candidates.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        }
        let mx = logits[candidates[0]] * invT
        var probs = candidates.map { Double(exp(logits[$0] * invT - mx)) }
        var total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        var keep = probs.count
        if p.minP > 0 {
            let threshold = Double(p.minP) * probs[0]
            while keep > 1 && probs[keep - 1] < threshold { keep -= 1 }
        }
        if p.topP < 1 {
            var cum = 0.0
            var n = 0
            while n < keep {
                cum += probs[n]
                n += 1
                if cum >= Double(p.topP) { break }
            }
            keep = max(1, n)
        }
        total = probs[0..<keep].reduce(0, +)
        var u = rng.unit() * total
        for i in 0..<keep {
            u -= probs[i]
            if u < 0 { return candidates[i] }
        }
        return candidates[keep - 1]
    }
}
