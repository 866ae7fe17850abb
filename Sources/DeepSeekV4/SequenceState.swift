// SequenceState.swift: where each layer's running state and history live inside the
// engine's cache units (transformers' modeling_deepseek_v4.py, DeepseekV4HCACache / DeepseekV4CSACache), and a self-contained state for single sequences.
//
// State buffer, per layer: the sliding-window ring `[window, headDim]` (position p in slot
// p mod window), then for each compressor its slot values and scores `[slots, width]`
// (slots = ratio, or 2·ratio for overlapping CSA whose first half is the previous window).
// History page, per layer: the compressed entries `[pageTokens/ratio, entryWidth]` whose
// windows fall in the page's positions, then (CSA) the indexer keys likewise. Each compressor's
// share of a page is one region of the layout: page pools keep a region of all pages together
// (PagePool), so a sequence's entries of one compressor lie in one run across its pages.
import CKernels
import ModelRuntime

/// Offsets of one compressor inside the state buffer and the pages.
struct CompressorSlots: Sendable {
    let ratio: Int
    let entryWidth: Int
    /// Trailing RoPE'd values of an entry (kept in BF16 by the fp8 format).
    let ropeDims: Int
    let overlapping: Bool
    /// Projection width: entryWidth, or 2·entryWidth when overlapping.
    var width: Int { overlapping ? 2 * entryWidth : entryWidth }
    var slotCount: Int { overlapping ? 2 * ratio : ratio }
    /// State offsets of the slot values and scores.
    let kvOffset: Int
    let scoreOffset: Int
    /// Page offset and size (values) of this compressor's region, and entries per page.
    let pageOffset: Int
    let pageFloats: Int
    let entriesPerPage: Int
    /// Stored format of untiled entries, and the page values (4-byte units) one takes.
    let format: ck_kv_format
    let entryFloats: Int
    /// Indexer keys: stored in tiles of `CK_INDEXER_TILE` entries in this format (read as
    /// tiles by the indexer kernels), `tileFloats` page values each. nil: one entry after another.
    let tiles: IndexerKeyFormat?
    let tileFloats: Int
    var tiled: Bool { tiles != nil }
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

    init(config c: DeepSeekV4Config, pageTokens requested: Int? = nil, dtype: KVCacheDType = .f32) {
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
        var regions: [Int] = []
        func compressor(ratio: Int, entryWidth: Int, overlapping: Bool, kind: CacheKind, tiled: Bool = false) -> CompressorSlots {
            let width = overlapping ? 2 * entryWidth : entryWidth
            let slots = overlapping ? 2 * ratio : ratio
            let format = dtype.entryFormat
            let tiles = tiled ? dtype.indexerKeys(width: entryWidth) : nil
            let tileFloats = (tiles?.tileBytes(width: entryWidth) ?? 0) / 4
            let entryFloats = ck_kv_entry_bytes(format, entryWidth, c.ropeDim) / 4
            let perPage = pageTokens / ratio
            let pageShare = tiled ? perPage / Int(CK_INDEXER_TILE) * tileFloats : perPage * entryFloats
            let s = CompressorSlots(
                ratio: ratio, entryWidth: entryWidth, ropeDims: c.ropeDim, overlapping: overlapping, kvOffset: state,
                scoreOffset: state + slots * width, pageOffset: page, pageFloats: pageShare, entriesPerPage: perPage, format: format,
                entryFloats: entryFloats, tiles: tiles, tileFloats: tileFloats)
            regions.append(pageShare)
            state += 2 * slots * width
            page += pageShare
            stateKinds[.compressorTails, default: 0] += 2 * slots * width
            pageKinds[kind, default: 0] += pageShare
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
        var layout = CacheLayout(
            pageTokens: pageTokens, pageFloats: max(page, 1), stateFloats: state, pageKinds: pageKinds, stateKinds: stateKinds,
            pageRegions: page == 0 ? [1] : regions)
        layout.storage = dtype.rawValue
        self.layout = layout
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
    let pages: PageTable

    var kv: UnsafeMutablePointer<Float> { state + slots.kvOffset }
    var score: UnsafeMutablePointer<Float> { state + slots.scoreOffset }

    /// Where entry `e` of an untiled compressor is stored (`[entryWidth]` floats when the
    /// format is f32, else `entryFloats` values of packed bytes: read it with `load`).
    @inline(__always)
    func entry(_ e: Int) -> UnsafeMutablePointer<Float> {
        precondition(!slots.tiled)
        return region(e / slots.entriesPerPage) + (e % slots.entriesPerPage) * slots.entryFloats
    }

    /// Whether entries are stored as plain floats (read in place, no copy).
    var floatEntries: Bool { slots.format == CK_KV_F32 }

    /// Entry `e` of an untiled compressor as `entryWidth` floats into `out`.
    @inline(__always)
    func load(_ e: Int, into out: UnsafeMutablePointer<Float>) {
        ck_kv_load(slots.format, entry(e), slots.entryWidth, slots.ropeDims, out)
    }

    /// Tile `i` of a tiled compressor: entries `i·L ..< (i+1)·L`, L = CK_INDEXER_TILE, in the
    /// tile format (f32: `[entryWidth][L]` floats).
    @inline(__always)
    func tile(_ i: Int) -> UnsafeMutablePointer<Float> {
        let L = Int(CK_INDEXER_TILE)
        let first = i * L
        return region(first / slots.entriesPerPage) + (first % slots.entriesPerPage) / L * slots.tileFloats
    }

    /// Tiles `0..<n` of a tiled compressor, page by page.
    func tilePointers(count n: Int) -> [UnsafeRawPointer?] {
        let perPage = slots.entriesPerPage / Int(CK_INDEXER_TILE)
        var out: [UnsafeRawPointer?] = []
        out.reserveCapacity(n)
        var p = 0
        while out.count < n {
            let base = region(p)
            for i in 0..<min(perPage, n - out.count) { out.append(UnsafeRawPointer(base + i * slots.tileFloats)) }
            p += 1
        }
        return out
    }

    /// This compressor's region of page `p`.
    @inline(__always)
    func region(_ p: Int) -> UnsafeMutablePointer<Float> {
        pages.region(page: p, offset: slots.pageOffset, floats: slots.pageFloats)
    }

    /// Writes entry `e` from `values` (`[entryWidth]`), in the compressor's layout and format.
    func store(_ e: Int, from values: UnsafePointer<Float>) {
        let d = slots.entryWidth
        guard let tiles = slots.tiles else {
            ck_kv_store(slots.format, values, d, slots.ropeDims, entry(e))
            return
        }
        let L = Int(CK_INDEXER_TILE)
        let slot = e % L
        switch tiles {
        case .f32:
            let base = tile(e / L) + slot
            for i in 0..<d { base[i * L] = values[i] }
        case .bf16: ck_indexer_store_bf16(values, d, tile(e / L), slot)
        case .int8: ck_indexer_store_i8(values, d, tile(e / L), slot)
        }
    }
}

/// The decode state of one sequence, holding its own state buffer and pages (for single
/// sequences: the CLI and tests). The engine uses the paged cache instead.
public final class SequenceState {
    /// Tokens processed so far (the position of the next token).
    public internal(set) var position: Int = 0
    let layout: CacheLayout
    let state: UnsafeMutablePointer<Float>
    private let pool: PagePool
    private var slots: [Int] = []

    init(map: CacheMap) {
        layout = map.layout
        state = .allocate(capacity: layout.stateFloats)
        map.initialize(state)
        pool = PagePool(layout: layout, capacity: 16)
    }

    deinit {
        state.deallocate()
    }

    /// The block table (valid until the next `reserve`).
    var pages: PageTable { pool.table(slots) }

    /// Makes sure pages cover `positions` positions (the pool doubles when full).
    func reserve(positions: Int) {
        let needed = layout.pageCount(forPositions: positions)
        if needed > pool.capacity { pool.grow(to: max(needed, 2 * pool.capacity)) }
        while slots.count < needed {
            let s = pool.allocate()!
            pool.zero(s)
            slots.append(s)
        }
    }

    /// Bytes held by this state (state buffer and pages).
    public var byteCount: Int { layout.stateBytes + slots.count * layout.pageBytes }
}
