// CausalLM.swift: the seam between a model and the engine that batches, caches and samples.
//
// The engine owns memory; the model owns the meaning of it. A sequence's cache is one
// fixed-size state buffer (sliding-window rings, compressor tails) plus a block table of
// history pages, each covering `pageTokens` positions (compressed entries, indexer keys).
// States are plain float buffers; pages are float units split into regions that a PagePool
// stores region-major (PagePool.swift). Both are addressable and serialisable, so the engine
// can share, copy, evict or tier them to disk without knowing what they hold.

/// What one region of a cache unit holds (transformers' DeepseekV4HCACache / DeepseekV4CSACache). History pages carry the first three
/// kinds, sequence states the last two.
public enum CacheKind: String, Sendable, CaseIterable {
    /// Compressed CSA entries (one per `csaRatio` positions per CSA layer), in history pages.
    case csaEntries
    /// Lightning-indexer keys of CSA layers, in history pages.
    case indexerKeys
    /// Heavily compressed HCA entries (one per `hcaRatio` positions), in history pages.
    case hcaEntries
    /// Sliding-window rings of every layer, in sequence states.
    case windowRings
    /// Compressor tails (open window values and scores of every compressor), in sequence states.
    case compressorTails
    /// Values a layout does not attribute to a kind (models that give no breakdown).
    case other

    /// Kinds stored in history pages, and kinds stored in sequence states.
    public static let pageKinds: [CacheKind] = [.csaEntries, .indexerKeys, .hcaEntries]
    public static let stateKinds: [CacheKind] = [.windowRings, .compressorTails]
}

/// Sizes of a model's cache units, in fp32 values.
public struct CacheLayout: Sendable, Equatable {
    /// Positions covered by one history page.
    public let pageTokens: Int
    /// Values in one history page (every layer's entries for `pageTokens` positions).
    public let pageFloats: Int
    /// Values in one sequence state (rings and compressor tails of every layer).
    public let stateFloats: Int
    /// Values of each kind in one history page; the unattributed rest is `.other`.
    public let pageFloatsByKind: [CacheKind: Int]
    /// Values of each kind in one sequence state; the unattributed rest is `.other`.
    public let stateFloatsByKind: [CacheKind: Int]
    /// How the model stores values in pages (e.g. "f32", "bf16", "fp8"), for reports.
    public var storage = "f32"
    /// Sizes of the page's regions in layout order (they add up to `pageFloats`): a page pool
    /// keeps each region of all its pages together (PagePool).
    public let pageRegions: [Int]

    /// - Parameters:
    ///   - pageKinds: values per kind in a page (must not exceed `pageFloats` in total).
    ///   - stateKinds: values per kind in a state (must not exceed `stateFloats` in total).
    ///   - pageRegions: sizes of the page's regions (default: one region, the whole page).
    public init(
        pageTokens: Int, pageFloats: Int, stateFloats: Int, pageKinds: [CacheKind: Int] = [:], stateKinds: [CacheKind: Int] = [:],
        pageRegions: [Int]? = nil
    ) {
        self.pageTokens = pageTokens
        self.pageFloats = pageFloats
        self.stateFloats = stateFloats
        let regions = (pageRegions ?? [pageFloats]).filter { $0 > 0 }
        precondition(regions.reduce(0, +) == pageFloats, "page regions hold \(regions.reduce(0, +)) values of a \(pageFloats)-value page")
        self.pageRegions = regions
        func complete(_ parts: [CacheKind: Int], total: Int) -> [CacheKind: Int] {
            var out = parts.filter { $0.value > 0 && $0.key != .other }
            let attributed = out.values.reduce(0, +)
            precondition(attributed <= total, "cache kinds hold \(attributed) values of a \(total)-value unit")
            if attributed < total { out[.other] = total - attributed }
            return out
        }
        pageFloatsByKind = complete(pageKinds, total: pageFloats)
        stateFloatsByKind = complete(stateKinds, total: stateFloats)
    }

    public var pageBytes: Int { pageFloats * 4 }
    public var stateBytes: Int { stateFloats * 4 }

    /// Bytes of `kind` in one page and in one state.
    public func pageBytes(of kind: CacheKind) -> Int { (pageFloatsByKind[kind] ?? 0) * 4 }
    public func stateBytes(of kind: CacheKind) -> Int { (stateFloatsByKind[kind] ?? 0) * 4 }

    /// History-page bytes per position of context.
    public var pageBytesPerToken: Double { Double(pageBytes) / Double(pageTokens) }

    /// Pages needed to hold `positions` positions.
    public func pageCount(forPositions positions: Int) -> Int { (positions + pageTokens - 1) / pageTokens }
}

/// Which logits a step wants back.
public enum LogitsRequest: Sendable, Equatable {
    case none
    case last
    case all
}

/// One sequence's share of a forward step.
public struct SequenceStep {
    /// The next tokens of the sequence.
    public var tokens: [Int]
    /// Position of `tokens[0]` (tokens already in the cache).
    public var position: Int
    /// The sequence's state buffer (`CacheLayout.stateFloats` values).
    public var state: UnsafeMutablePointer<Float>
    /// Block table: history pages in position order, covering at least `position + tokens.count`.
    public var pages: PageTable
    public var logits: LogitsRequest
    /// When set, receives a copy of the state as it is after this step (an exact snapshot at
    /// a page boundary for prefix reuse). Several steps of one sequence may share a batch,
    /// in position order; each then sees the state its predecessors left.
    public var snapshot: UnsafeMutablePointer<Float>?

    public init(
        tokens: [Int], position: Int, state: UnsafeMutablePointer<Float>, pages: PageTable,
        logits: LogitsRequest, snapshot: UnsafeMutablePointer<Float>? = nil
   ) {
        self.tokens = tokens
        self.position = position
        self.state = state
        self.pages = pages
        self.logits = logits
        self.snapshot = snapshot
    }
}

/// A causal language model the engine can drive.
public protocol CausalLM: AnyObject, Sendable {
    var vocabSize: Int { get }
    /// Largest number of positions a sequence may reach.
    var maxPositions: Int { get }
    var cacheLayout: CacheLayout { get }
    /// End-of-sequence token ids from the model's config.
    var eosTokenIds: [Int] { get }

    /// Writes the state of an empty sequence into `state`.
    func initializeState(_ state: UnsafeMutablePointer<Float>)

    /// Runs every step together (matrix products over the whole batch, attention per sequence)
    /// and returns, per step, its requested logits rows (`[rows, vocabSize]`, empty for `.none`).
    func forward(_ steps: [SequenceStep]) throws -> [[Float]]
}
