// HyperConnectionTests.swift: the fused mHC step (expand of one block, mixes and input of the
// next, a chunk of tokens at a time over the kernel threads) against the unfused passes, bit
// for bit, on token counts around the chunk size.
@testable import DeepSeekV4
import Foundation
import Tensors
import Testing

@Suite struct HyperConnectionTests {
    static func randoms(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var s = seed | 1
        return (0..<n).map { _ in
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return (Float(s % 20001) / 10000 - 1) * scale
        }
    }

    @Test(arguments: [1, 31, 32, 33, 100])
    func fusedStepIsTheUnfusedPassesBitForBit(tokens T: Int) throws {
        let c = try DeepSeekV4Config.load(directory: fixture("tiny-hf"))
        let N = c.hcMult, D = c.hiddenSize, M = c.hcMixCount
        func weights(_ seed: UInt64) -> HyperConnectionWeights {
            HyperConnectionWeights(
                fn: WeightMatrix(rows: M, cols: N * D, values: Self.randoms(M * N * D, seed: seed, scale: 0.05)),
                base: Self.randoms(M, seed: seed + 1), scale: Self.randoms(3, seed: seed + 2))
        }
        let first = weights(11), second = weights(23)
        let X0 = Self.randoms(T * N * D, seed: 5), a = Self.randoms(T * D, seed: 7)

        // Unfused: mixes and input of the first block; its expand; mixes and input of the second.
        let mix1 = HyperConnection.blockMix(first, streams: X0, tokenCount: T, config: c)
        let u1 = HyperConnection.collapse(streams: X0, weights: mix1.pre, tokenCount: T, hidden: D, streamCount: N)
        var X1 = X0
        HyperConnection.expand(streams: &X1, blockOutput: a, mix: mix1, tokenCount: T, hidden: D, streamCount: N)
        let mix2 = HyperConnection.blockMix(second, streams: X1, tokenCount: T, config: c)
        let u2 = HyperConnection.collapse(streams: X1, weights: mix2.pre, tokenCount: T, hidden: D, streamCount: N)

        // Compared as booleans: a failing array comparison would print every element.
        func same(_ a: HyperMixes, _ b: HyperMixes) -> Bool { a.pre == b.pre && a.post == b.post && a.comb == b.comb }
        var X = X0
        let (fmix1, fu1) = HyperConnection.step(streams: &X, expanding: nil, next: first, tokenCount: T, config: c)
        let streams0 = X == X0, mixes1 = same(fmix1, mix1), input1 = fu1 == u1
        #expect(streams0, "streams left as they were")
        #expect(mixes1, "mixes of the first block")
        #expect(input1, "input of the first block")
        let (fmix2, fu2) = HyperConnection.step(streams: &X, expanding: (a, fmix1), next: second, tokenCount: T, config: c)
        let streams1 = X == X1, mixes2 = same(fmix2, mix2), input2 = fu2 == u2
        #expect(streams1, "streams after the expand")
        #expect(mixes2, "mixes of the second block")
        #expect(input2, "input of the second block")
    }
}
