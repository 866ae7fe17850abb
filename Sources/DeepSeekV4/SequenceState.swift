// SequenceState.swift: everything one sequence carries between forward calls (spec §5.4, §12).
//
// Per layer: the sliding-window ring of kv vectors, the compressor tails (partial windows
// awaiting compression, plus the previous window for overlapping CSA), the compressed
// entries and, in CSA layers, the indexer keys. Plain value arrays, so that a later paged
// cache can re-home them page by page.

/// Running state of one compressor: the reference state machine of spec §5.4.
struct CompressorState: Sendable {
    let ratio: Int
    /// Projection width: entryWidth (HCA) or 2·entryWidth (CSA).
    let width: Int
    let overlapping: Bool
    /// `[slots, width]` values; slots = ratio (HCA) or 2·ratio (CSA, first half = previous window).
    var kv: [Float]
    /// `[slots, width]` scores (gate + ape); −∞ marks empty previous-window slots.
    var score: [Float]
    /// Finished entries, `[entryCount, entryWidth]`, normalised and rotated.
    var entries: [Float] = []
    var entryCount = 0

    init(ratio: Int, entryWidth: Int, overlapping: Bool) {
        self.ratio = ratio
        self.overlapping = overlapping
        width = overlapping ? 2 * entryWidth : entryWidth
        let slots = overlapping ? 2 * ratio : ratio
        kv = [Float](repeating: 0, count: slots * width)
        score = [Float](repeating: -.infinity, count: slots * width)
    }
}

/// State of one attention layer.
struct LayerState: Sendable {
    /// Ring of the last `window` kv vectors, `[window, headDim]`; position p lives in slot p mod window.
    var window: [Float]
    var compressor: CompressorState?
    var indexer: CompressorState?
}

/// The decode state of one sequence: position and per-layer state.
public struct SequenceState: Sendable {
    /// Tokens processed so far (the position of the next token).
    public internal(set) var position: Int = 0
    var layers: [LayerState]

    /// A fresh state for a model with `config`.
    public init(config c: DeepSeekV4Config) {
        layers = (0..<c.layerCount).map { l in
            var s = LayerState(window: [Float](repeating: 0, count: c.slidingWindow * c.headDim))
            switch c.attentionKinds[l] {
            case .sliding: break
            case .hca: s.compressor = CompressorState(ratio: c.hcaRatio, entryWidth: c.headDim, overlapping: false)
            case .csa:
                s.compressor = CompressorState(ratio: c.csaRatio, entryWidth: c.headDim, overlapping: true)
                s.indexer = CompressorState(ratio: c.csaRatio, entryWidth: c.indexHeadDim, overlapping: true)
            }
            return s
        }
    }

    /// Bytes held by this state (rings, tails, entries).
    public var byteCount: Int {
        layers.reduce(0) { acc, l in
            var b = l.window.count
            for c in [l.compressor, l.indexer].compactMap({ $0 }) { b += c.kv.count + c.score.count + c.entries.count }
            return acc + b * 4
        }
    }
}
