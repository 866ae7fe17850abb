// SequenceState.swift: where each layer's running state and history live inside the
// engine's cache units (transformers' modeling_deepseek_v4.py, DeepseekV4HCACache / DeepseekV4CSACache), and a self-contained state for single sequences.
//
// State buffer, per layer: the sliding-window ring `[window, headDim]` (position p in slot
// p mod window), then for each compressor its slot values and scores `[slots, width]`
// (slots = ratio, or 2·ratio for overlapping CSA whose first half is the previous window).
// History page, per layer: the compressed entries `[pageTokens/ratio, entryWidth]` whose
// windows fall in the page's positions, then (CSA) the indexer keys likewise.
import CKernels
import ModelRuntime

/// Offsets of one compressor inside the state buffer and the pages.
struct CompressorSlots: Sendable {
    let ratio: Int
    let entryWidth: Int
    let overlapping: Bool
    /// Projection width: entryWidth, or 2·entryWidth when overlapping.
    var width: Int { overlapping ? 2 * entryWidth : entryWidth }
    var slotCount: Int { overlapping ? 2 * ratio : ratio }
    /// State offsets of the slot values and scores.
    let kvOffset: Int
    let scoreOffset: Int
    /// Page offset of this compressor's entries and entries per page.
    let pageOffset: Int
    let entriesPerPage: Int
    /// Entries stored in tiles of `CK_INDEXER_TILE`, dimension-major (the indexer's keys, read
    /// as tiles by `ck_indexer_topk`); otherwise one entry after another.
    let tiled: Bool
}

struct LayerSlots: Sendable {
    /// The layer's whole share of the state buffer.
    var stateRange: Range<Int> = 0..<0
    let ringOffset: Int
    let compressor: CompressorSlots?
    let indexer: CompressorSlots?
}

/// The whole layout of a model's cache units.
struct CacheMap: Sendable {
    let layout: CacheLayout
    let layers: [LayerSlots]

    init(config c: DeepSeekV4Config, pageTokens requested: Int? = nil) {
        // Pages cover a multiple of every ratio, so entries never straddle pages and a full
        // page ends on a window boundary of every compressor.
        // Indexer keys are stored in whole tiles of CK_INDEXER_TILE entries per page.
        let ratios = (0..<c.layerCount).map { c.compressRatio(layer: $0) }.filter { $0 > 0 }
        let hasCSA = c.attentionKinds.contains(.csa)
        let unit = ratios.reduce(hasCSA ? Int(CK_INDEXER_TILE) * c.csaRatio : 1) { lcm($0, $1) }
        let want = requested ?? max(unit, 64)
        let pageTokens = max(unit, (want + unit - 1) / unit * unit)
        var state = 0
        var page = 0
        var layers: [LayerSlots] = []
        var pageKinds: [CacheKind: Int] = [:]
        var stateKinds: [CacheKind: Int] = [:]
        func compressor(ratio: Int, entryWidth: Int, overlapping: Bool, kind: CacheKind, tiled: Bool = false) -> CompressorSlots {
            let width = overlapping ? 2 * entryWidth : entryWidth
            let slots = overlapping ? 2 * ratio : ratio
            let s = CompressorSlots(
                ratio: ratio, entryWidth: entryWidth, overlapping: overlapping, kvOffset: state, scoreOffset: state + slots * width,
                pageOffset: page, entriesPerPage: pageTokens / ratio, tiled: tiled)
            state += 2 * slots * width
            page += (pageTokens / ratio) * entryWidth
            stateKinds[.compressorTails, default: 0] += 2 * slots * width
            pageKinds[kind, default: 0] += (pageTokens / ratio) * entryWidth
            return s
        }
        for l in 0..<c.layerCount {
            let ring = state
            state += c.slidingWindow * c.headDim
            stateKinds[.windowRings, default: 0] += c.slidingWindow * c.headDim
            switch c.attentionKinds[l] {
            case .sliding:
                layers.append(LayerSlots(ringOffset: ring, compressor: nil, indexer: nil))
            case .hca:
                layers.append(LayerSlots(ringOffset: ring, compressor: compressor(ratio: c.hcaRatio, entryWidth: c.headDim, overlapping: false, kind: .hcaEntries), indexer: nil))
            case .csa:
                let main = compressor(ratio: c.csaRatio, entryWidth: c.headDim, overlapping: true, kind: .csaEntries)
                let idx = compressor(ratio: c.csaRatio, entryWidth: c.indexHeadDim, overlapping: true, kind: .indexerKeys, tiled: true)
                layers.append(LayerSlots(ringOffset: ring, compressor: main, indexer: idx))
            }
        }
        for l in 0..<layers.count {
            layers[l].stateRange = layers[l].ringOffset..<(l + 1 < layers.count ? layers[l + 1].ringOffset : state)
        }
        self.layers = layers
        layout = CacheLayout(
            pageTokens: pageTokens, pageFloats: max(page, 1), stateFloats: state, pageKinds: pageKinds, stateKinds: stateKinds)
    }

    /// Empty-sequence state: zero values, −∞ scores (empty previous-window slots).
    func initialize(_ s: UnsafeMutablePointer<Float>) {
        s.update(repeating: 0, count: layout.stateFloats)
        for l in layers {
            for c in [l.compressor, l.indexer].compactMap({ $0 }) {
                (s + c.scoreOffset).update(repeating: -.infinity, count: c.slotCount * c.width)
            }
        }
    }
}

private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
private func lcm(_ a: Int, _ b: Int) -> Int { a / gcd(a, b) * b }

/// A compressor's state and entries for one sequence during a step.
struct CompressorView {
    let slots: CompressorSlots
    let state: UnsafeMutablePointer<Float>
    let pages: [UnsafeMutablePointer<Float>]

    var kv: UnsafeMutablePointer<Float> { state + slots.kvOffset }
    var score: UnsafeMutablePointer<Float> { state + slots.scoreOffset }

    /// Entry `e` (`[entryWidth]`) of an untiled compressor.
    @inline(__always)
    func entry(_ e: Int) -> UnsafeMutablePointer<Float> {
        precondition(!slots.tiled)
        return pages[e / slots.entriesPerPage] + slots.pageOffset + (e % slots.entriesPerPage) * slots.entryWidth
    }

    /// Tile `i` of a tiled compressor: entries `i·L ..< (i+1)·L` as `[entryWidth][L]`, L = CK_INDEXER_TILE.
    @inline(__always)
    func tile(_ i: Int) -> UnsafeMutablePointer<Float> {
        let L = Int(CK_INDEXER_TILE)
        let first = i * L
        return pages[first / slots.entriesPerPage] + slots.pageOffset + (first % slots.entriesPerPage) * slots.entryWidth
    }

    /// Writes entry `e` from `values` (`[entryWidth]`), in the compressor's layout.
    func store(_ e: Int, from values: UnsafePointer<Float>) {
        guard slots.tiled else {
            entry(e).update(from: values, count: slots.entryWidth)
            return
        }
        let L = Int(CK_INDEXER_TILE)
        let base = tile(e / L) + e % L
        for i in 0..<slots.entryWidth { base[i * L] = values[i] }
    }
}

/// The decode state of one sequence, holding its own state buffer and pages (for single
/// sequences: the CLI and tests). The engine uses the paged cache instead.
public final class SequenceState {
    /// Tokens processed so far (the position of the next token).
    public internal(set) var position: Int = 0
    let layout: CacheLayout
    let state: UnsafeMutablePointer<Float>
    private(set) var pages: [UnsafeMutablePointer<Float>] = []

    init(map: CacheMap) {
        layout = map.layout
        state = .allocate(capacity: layout.stateFloats)
        map.initialize(state)
    }

    deinit {
        state.deallocate()
        for p in pages { p.deallocate() }
    }

    /// Makes sure pages cover `positions` positions.
    func reserve(positions: Int) {
        while pages.count < layout.pageCount(forPositions: positions) {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: layout.pageFloats)
            p.initialize(repeating: 0, count: layout.pageFloats)
            pages.append(p)
        }
    }

    /// Bytes held by this state (state buffer and pages).
    public var byteCount: Int { layout.stateBytes + pages.count * layout.pageBytes }
}
