// BlockStore.swift: fixed-size float blocks under one byte budget, with reference counts.
//
// Three kinds of block share the budget: history pages (compressed entries of a span of
// positions), live states (a sequence's rings and compressor tails) and snapshots (an exact
// copy of a state at a page boundary). A block is an addressable, serialisable unit: an id, a
// kind and `floats` values. Within a block the model's layout says which cache kind
// (CSA entries, indexer keys, HCA entries, window rings, compressor tails) each value is, so
// the store accounts bytes per cache kind as well as per block kind.
import ModelRuntime

/// Identifies one block of the store.
public struct BlockID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let raw: Int
    public static func < (a: BlockID, b: BlockID) -> Bool { a.raw < b.raw }
    public var description: String { "#\(raw)" }
}

/// What a block holds.
public enum BlockKind: String, Sendable, CaseIterable {
    /// Compressed history of `pageTokens` positions (CSA entries, indexer keys, HCA entries).
    case page
    /// A sequence's live state.
    case state
    /// An exact copy of a state at a page boundary (held by the prefix cache).
    case snapshot

    /// Whether blocks of this kind have the state layout (else the page layout).
    public var isStateLike: Bool { self != .page }
}

/// Owns the memory of every block; not thread-safe (the engine loop owns it).
public final class BlockStore {
    public let layout: CacheLayout
    public let budgetBytes: Int
    public private(set) var usedBytes = 0
    private var blocks: [Int: (kind: BlockKind, pointer: UnsafeMutablePointer<Float>, refs: Int)] = [:]
    private var nextID = 0
    /// Freed buffers kept for reuse, by size class (pages; states and snapshots).
    private var free: [Bool: [UnsafeMutablePointer<Float>]] = [false: [], true: []]
    private var live: [BlockKind: Int] = [.page: 0, .state: 0, .snapshot: 0]

    public init(layout: CacheLayout, budgetBytes: Int) {
        self.layout = layout
        self.budgetBytes = budgetBytes
    }

    deinit {
        for (_, b) in blocks { b.pointer.deallocate() }
        for (_, list) in free { for p in list { p.deallocate() } }
    }

    public func bytes(of kind: BlockKind) -> Int { kind.isStateLike ? layout.stateBytes : layout.pageBytes }
    public func floats(of kind: BlockKind) -> Int { kind.isStateLike ? layout.stateFloats : layout.pageFloats }

    /// Live blocks of each kind.
    public func count(_ kind: BlockKind) -> Int { live[kind]! }
    public var liveBlockCount: Int { blocks.count }

    /// Bytes held by live blocks of `kind`.
    public func usedBytes(of kind: BlockKind) -> Int { live[kind]! * bytes(of: kind) }

    /// Bytes of cache kind `kind` held by live blocks (pages, states and snapshots).
    public func usedBytes(of kind: CacheKind) -> Int {
        live[.page]! * layout.pageBytes(of: kind) + (live[.state]! + live[.snapshot]!) * layout.stateBytes(of: kind)
    }

    /// Whether `pages` pages and `states` states would fit in the remaining budget.
    public func canAllocate(pages: Int, states: Int) -> Bool {
        usedBytes + pages * layout.pageBytes + states * layout.stateBytes <= budgetBytes
    }

    /// A new block with one reference, or nil when the budget is spent.
    public func allocate(_ kind: BlockKind) -> BlockID? {
        let size = bytes(of: kind)
        guard usedBytes + size <= budgetBytes else { return nil }
        usedBytes += size
        let p = free[kind.isStateLike]!.popLast() ?? UnsafeMutablePointer<Float>.allocate(capacity: floats(of: kind))
        let id = BlockID(raw: nextID)
        nextID += 1
        blocks[id.raw] = (kind, p, 1)
        live[kind]! += 1
        return id
    }

    public func pointer(_ id: BlockID) -> UnsafeMutablePointer<Float> { blocks[id.raw]!.pointer }
    public func kind(_ id: BlockID) -> BlockKind { blocks[id.raw]!.kind }
    public func references(_ id: BlockID) -> Int { blocks[id.raw]?.refs ?? 0 }
    public func contains(_ id: BlockID) -> Bool { blocks[id.raw] != nil }

    public func retain(_ id: BlockID) {
        blocks[id.raw]!.refs += 1
    }

    /// Drops one reference; the block's memory returns to the budget at zero.
    public func release(_ id: BlockID) {
        guard var b = blocks[id.raw] else { preconditionFailure("release of unknown block \(id)") }
        b.refs -= 1
        if b.refs > 0 {
            blocks[id.raw] = b
            return
        }
        blocks[id.raw] = nil
        usedBytes -= bytes(of: b.kind)
        live[b.kind]! -= 1
        // Keep a few freed buffers for reuse; return the rest to the system.
        if free[b.kind.isStateLike]!.count < 8 { free[b.kind.isStateLike]!.append(b.pointer) } else { b.pointer.deallocate() }
    }

    /// Copies the contents of `source` into `destination` (same layout: page to page, or
    /// between states and snapshots).
    public func copy(_ source: BlockID, to destination: BlockID) {
        precondition(kind(source).isStateLike == kind(destination).isStateLike)
        pointer(destination).update(from: pointer(source), count: floats(of: kind(source)))
    }
}
