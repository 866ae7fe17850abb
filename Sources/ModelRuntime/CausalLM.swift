// CausalLM.swift: the seam between a model and the engine that batches, caches and samples.
//
// The engine owns memory; the model owns the meaning of it. A sequence's cache is one
// fixed-size state buffer (sliding-window rings, compressor tails) plus a block table of
// history pages, each covering `pageTokens` positions (compressed entries, indexer keys).
// Pages and states are plain float buffers, addressable and serialisable, so the engine can
// share, copy, evict or (later) tier them to disk without knowing what they hold.

/// Sizes of a model's cache units, in fp32 values.
public struct CacheLayout: Sendable, Equatable {
    /// Positions covered by one history page.
    public let pageTokens: Int
    /// Values in one history page (every layer's entries for `pageTokens` positions).
    public let pageFloats: Int
    /// Values in one sequence state (rings and compressor tails of every layer).
    public let stateFloats: Int

    public init(pageTokens: Int, pageFloats: Int, stateFloats: Int) {
        self.pageTokens = pageTokens
        self.pageFloats = pageFloats
        self.stateFloats = stateFloats
    }

    public var pageBytes: Int { pageFloats * 4 }
    public var stateBytes: Int { stateFloats * 4 }

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
    public var pages: [UnsafeMutablePointer<Float>]
    public var logits: LogitsRequest
    /// When set, receives a copy of the state as it is after this step (an exact snapshot at
    /// a page boundary for prefix reuse). Several steps of one sequence may share a batch,
    /// in position order; each then sees the state its predecessors left.
    public var snapshot: UnsafeMutablePointer<Float>?

    public init(
        tokens: [Int], position: Int, state: UnsafeMutablePointer<Float>, pages: [UnsafeMutablePointer<Float>],
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
