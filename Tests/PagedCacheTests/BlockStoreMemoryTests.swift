// BlockStoreMemoryTests.swift: the memory of a released state or snapshot leaves the process
// (it used to stay in malloc's heap: a long prompt that made and dropped thousands of
// snapshots held the budget plus ~0.45 GB of freed ones).
import Foundation
import ModelRuntime
import PagedCache
import Testing

@Suite struct BlockStoreMemoryTests {
    /// Whether any byte of [p, p + bytes) is still mapped in this process (mincore fails with
    /// ENOMEM on a range with unmapped pages).
    static func mapped(_ p: UnsafeMutablePointer<Float>, bytes: Int) -> Bool {
        var vec = [UInt8](repeating: 0, count: (bytes + 4095) / 4096)
        return mincore(UnsafeMutableRawPointer(p), bytes, &vec) == 0 || errno != ENOMEM
    }

    @Test func releasedStatesAreUnmappedBeyondTheReuseList() throws {
        // 64 KB states: below malloc's mmap threshold, where a freed buffer between live ones
        // stayed in the heap (mapped and resident).
        let stateFloats = 16_384
        let layout = CacheLayout(pageTokens: 8, pageFloats: 16, stateFloats: stateFloats)
        let store = BlockStore(layout: layout, budgetBytes: 41 * layout.stateBytes)
        var blocks: [(id: BlockID, pointer: UnsafeMutablePointer<Float>)] = []
        for i in 0..<40 {
            let id = try #require(store.allocate(i % 2 == 0 ? .snapshot : .state))
            store.pointer(id).update(repeating: Float(i), count: stateFloats)  // resident
            blocks.append((id, store.pointer(id)))
        }
        // Every other block: holes between live ones. The store keeps 8 freed buffers for
        // reuse; the other 12 must leave the process.
        let released = blocks.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
        for b in released { store.release(b.id) }
        let kept = released.prefix(8), gone = released.dropFirst(8)
        for b in kept { #expect(Self.mapped(b.pointer, bytes: layout.stateBytes), "kept buffer \(b.id)") }
        for b in gone { #expect(!Self.mapped(b.pointer, bytes: layout.stateBytes), "released buffer \(b.id) still mapped") }
        // The live ones keep their values; a new state reuses a kept buffer.
        for (i, b) in blocks.enumerated() where i % 2 == 1 { #expect(store.pointer(b.id)[stateFloats - 1] == Float(i)) }
        let reused = try #require(store.allocate(.state))
        #expect(kept.contains { $0.pointer == store.pointer(reused) })
    }
}
