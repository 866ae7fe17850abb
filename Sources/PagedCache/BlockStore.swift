// BlockStore.swift: fixed-size float blocks under one byte budget, with reference counts.
//
// Two kinds share the budget: history pages (compressed entries of a span of positions) and
// states (a sequence's rings and compressor tails, or an exact snapshot of them at a page
// boundary). A block is an addressable, serialisable unit: an id, a kind and `floats` values.
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
    /// A sequence's live state, or a snapshot of it at a page boundary.
    case state
}

/// Owns the memory of every block; not thread-safe (the engine loop owns it).
public final class BlockStore {
    public let layout: CacheLayout
    public let budgetBytes: Int
    public private(set) var usedBytes = 0
    private var blocks: [Int: (kind: BlockKind, pointer: UnsafeMutablePointer<Float>, refs: Int)] = [:]
    private var nextID = 0
    private var free: [BlockKind: [UnsafeMutablePointer<Float>]] = [.page: [], .state: []]

    public init(layout: CacheLayout, budgetBytes: Int) {
        self.layout = layout
        self.budgetBytes = budgetBytes
    }

    deinit {
        for (_, b) in blocks { b.pointer.deallocate() }
        for (_, list) in free { for p in list { p.deallocate() } }
    }

    public func bytes(of kind: BlockKind) -> Int { kind == .page ? layout.pageBytes : layout.stateBytes }
    public func floats(of kind: BlockKind) -> Int { kind == .page ? layout.pageFloats : layout.stateFloats }

    /// Live blocks of each kind.
    public func count(_ kind: BlockKind) -> Int { blocks.values.filter { $0.kind == kind }.count }
    public var liveBlockCount: Int { blocks.count }

    /// Whether `pages` pages and `states` states would fit in the remaining budget.
    public func canAllocate(pages: Int, states: Int) -> Bool {
        usedBytes + pages * layout.pageBytes + states * layout.stateBytes <= budgetBytes
    }

    /// A new block with one reference, or nil when the budget is spent.
    public func allocate(_ kind: BlockKind) -> BlockID? {
        let size = bytes(of: kind)
        guard usedBytes + size <= budgetBytes else { return nil }
        usedBytes += size
        let p = free[kind]!.popLast() ?? UnsafeMutablePointer<Float>.allocate(capacity: floats(of: kind))
        let id = BlockID(raw: nextID)
        nextID += 1
        blocks[id.raw] = (kind, p, 1)
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
        // Keep a few freed buffers for reuse; return the rest to the system.
        if free[b.kind]!.count < 8 { free[b.kind]!.append(b.pointer) } else { b.pointer.deallocate() }
    }

    /// Copies the contents of `source` into `destination` (same kind).
    public func copy(_ source: BlockID, to destination: BlockID) {
        precondition(kind(source) == kind(destination))
        pointer(destination).update(from: pointer(source), count: floats(of: kind(source)))
    }
}
