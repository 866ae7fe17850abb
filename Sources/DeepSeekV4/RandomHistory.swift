// RandomHistory.swift: a sequence state holding a long history of random compressed entries
// and indexer keys, made without running the prompt: decode at a depth of a million tokens
// can then be measured in seconds instead of after the prefill's hours (`dsv4 bench
// decode-depth`). No prompt produces this state; decode reads the same amount of history from
// it, in the same layout and format, as from a real one.
import ModelRuntime

extension DeepSeekV4Model {
    /// A state of `positions` positions whose pages hold random entries (unit-variance values,
    /// stored in the cache dtype) and whose rings and compressor tails are those of an empty
    /// sequence.
    public func randomHistoryState(positions n: Int, seed: UInt64) throws -> SequenceState {
        guard n >= 0, n < config.maxPositionEmbeddings else {
            throw ModelError.contextOverflow(length: n + 1, maximum: config.maxPositionEmbeddings)
        }
        let s = makeState()
        s.reserve(positions: n)
        var rng = seed | 1
        func next() -> Float {
            // xorshift64*, then the sum of two uniforms (a cheap bell shape of variance 1/6), × √6.
            rng ^= rng >> 12
            rng ^= rng << 25
            rng ^= rng >> 27
            let x = rng &* 2_685_821_657_736_338_717
            return (Float(x >> 40) / Float(1 << 24) + Float((x >> 16) & 0xFFFFFF) / Float(1 << 24) - 1) * 2.449
        }
        for l in cacheMap.layers {
            for slots in [l.compressor, l.indexer].compactMap({ $0 }) {
                let view = CompressorView(slots: slots, state: s.state, pages: s.pages)
                var values = [Float](repeating: 0, count: slots.entryWidth)
                for e in 0..<(n / slots.ratio) {
                    for i in values.indices { values[i] = next() }
                    view.store(e, from: values)
                }
            }
        }
        s.position = n
        return s
    }
}
