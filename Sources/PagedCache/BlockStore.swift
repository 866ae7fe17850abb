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

/// Owns the memory of every block; not thread-safe (the engine loop owns it). Pages live in a
/// region-major PagePool sized to the budget; states and snapshots are buffers of their own
/// mappings (`MappedBuffer`), so the memory of a dropped one leaves the process.
public final class BlockStore {
    public let layout: CacheLayout
    public let budgetBytes: Int
    public private(set) var usedBytes = 0
    /// Changes on every allocation, release and retain (lets callers cache derived figures).
    public private(set) var version = 0
    /// A block: its kind, its buffer (states, snapshots) or pool slot (pages), its references.
    private struct Block {
        var kind: BlockKind
        let pointer: UnsafeMutablePointer<Float>?
        let slot: Int
        var refs: Int
    }
    private var blocks: [Int: Block] = [:]
    private var nextID = 0
    /// Freed state buffers kept for reuse.
    private var freeStates: [UnsafeMutablePointer<Float>] = []
    private var live: [BlockKind: Int] = [.page: 0, .state: 0, .snapshot: 0]
    public let pages: PagePool

    public init(layout: CacheLayout, budgetBytes: Int) {
        self.layout = layout
        self.budgetBytes = budgetBytes
        pages = PagePool(layout: layout, capacity: budgetBytes / max(layout.pageBytes, 1))
    }

    deinit {
        for (_, b) in blocks { if let p = b.pointer { MappedBuffer.deallocate(p, floats: layout.stateFloats) } }
        for p in freeStates { MappedBuffer.deallocate(p, floats: layout.stateFloats) }
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
        var pointer: UnsafeMutablePointer<Float>?
        var slot = -1
        if kind.isStateLike {
            pointer = freeStates.popLast() ?? MappedBuffer.allocate(floats: layout.stateFloats)
        } else {
            guard let s = pages.allocate() else { return nil }
            slot = s
        }
        usedBytes += size
        version += 1
        let id = BlockID(raw: nextID)
        nextID += 1
        blocks[id.raw] = Block(kind: kind, pointer: pointer, slot: slot, refs: 1)
        live[kind]! += 1
        return id
    }

    /// The buffer of a state or snapshot.
    public func pointer(_ id: BlockID) -> UnsafeMutablePointer<Float> {
        guard let p = blocks[id.raw]!.pointer else { preconditionFailure("block \(id) is a page: use slot(_:)") }
        return p
    }

    /// The pool slot of a page.
    public func slot(_ id: BlockID) -> Int {
        let b = blocks[id.raw]!
        precondition(b.kind == .page, "block \(id) is not a page")
        return b.slot
    }

    public func kind(_ id: BlockID) -> BlockKind { blocks[id.raw]!.kind }
    public func references(_ id: BlockID) -> Int { blocks[id.raw]?.refs ?? 0 }
    public func contains(_ id: BlockID) -> Bool { blocks[id.raw] != nil }

    public func retain(_ id: BlockID) {
        blocks[id.raw]!.refs += 1
        version += 1
    }

    /// Drops one reference; the block's memory returns to the budget at zero.
    public func release(_ id: BlockID) {
        guard var b = blocks[id.raw] else { preconditionFailure("release of unknown block \(id)") }
        version += 1
        b.refs -= 1
        if b.refs > 0 {
            blocks[id.raw] = b
            return
        }
        blocks[id.raw] = nil
        usedBytes -= bytes(of: b.kind)
        live[b.kind]! -= 1
        if let p = b.pointer {
            // Keep a few freed buffers for reuse; return the rest to the system.
            if freeStates.count < 8 { freeStates.append(p) } else { MappedBuffer.deallocate(p, floats: layout.stateFloats) }
        } else {
            pages.release(b.slot)
        }
    }

    /// Makes a live state a snapshot or back (same layout, no copy): a closing sequence's
    /// state kept by the prefix cache.
    public func convert(_ id: BlockID, to kind: BlockKind) {
        guard var b = blocks[id.raw] else { preconditionFailure("convert of unknown block \(id)") }
        precondition(b.kind.isStateLike && kind.isStateLike, "only states and snapshots convert")
        live[b.kind]! -= 1
        live[kind]! += 1
        b.kind = kind
        blocks[id.raw] = b
        version += 1
    }

    /// Copies the contents of `source` into `destination` (same layout: page to page, or
    /// between states and snapshots).
    public func copy(_ source: BlockID, to destination: BlockID) {
        precondition(kind(source).isStateLike == kind(destination).isStateLike)
        if kind(source).isStateLike {
            pointer(destination).update(from: pointer(source), count: layout.stateFloats)
        } else {
            pages.copy(slot(source), to: slot(destination))
        }
    }

    /// Zeroes a page.
    public func zero(page id: BlockID) { pages.zero(slot(id)) }
}
