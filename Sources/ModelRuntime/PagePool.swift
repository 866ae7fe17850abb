// PagePool.swift: where history pages live, laid out region-major, and a sequence's view of
// its pages (PageTable).
//
// A model splits its page into regions (`CacheLayout.pageRegions`: for V4, one per compressor
// of each layer: CSA entries, indexer keys, HCA entries). The pool stores region r of every
// slot back to back: slot j's region r is at `base + offset_r·capacity + j·size_r`. Slots are
// handed out lowest first, so a sequence's pages mostly hold consecutive slots and each region
// of its history (e.g. one layer's indexer keys over a million tokens) is one contiguous run
// that the hardware prefetchers stream, instead of a few kilobytes in every page (measured on
// the indexer's decode at 1M tokens of context: 1.8 ms per call over contiguous keys, 2.6–3.3 ms
// with two tiles per 22.6 KB page; bench/RESULTS.md). A page stays one addressable,
// serialisable unit: its regions are copied, zeroed or written out one after another.
import Glibc

/// A sequence's history pages in position order, and where the pool keeps them.
public struct PageTable: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>?
    public let capacity: Int
    /// Pool slot of each page.
    public var slots: [Int]

    public init(base: UnsafeMutablePointer<Float>?, capacity: Int, slots: [Int]) {
        self.base = base
        self.capacity = capacity
        self.slots = slots
    }

    public var count: Int { slots.count }

    /// The region of page `page` that starts `offset` values into the page layout and holds
    /// `floats` values (the model's layout names its regions).
    @inline(__always)
    public func region(page: Int, offset: Int, floats: Int) -> UnsafeMutablePointer<Float> {
        base! + offset * capacity + slots[page] * floats
    }
}

/// Fixed-capacity storage of history pages, region-major, with lowest-slot-first allocation.
/// Not thread-safe (its owner serialises allocation; pages are read and written by the model
/// while the owner waits).
public final class PagePool: @unchecked Sendable {
    public let pageFloats: Int
    /// Value offset and size of each region of the page layout.
    public let regions: [(offset: Int, floats: Int)]
    public private(set) var capacity: Int
    public private(set) var base: UnsafeMutablePointer<Float>
    private var mappedBytes: Int
    /// Slots below `highWater` that are free (a min-heap), and the first never-used slot.
    private var freeSlots = MinHeap()
    private var highWater = 0
    public private(set) var liveCount = 0

    /// - Parameter capacity: most pages the pool can hold (memory is reserved, not touched:
    ///   resident memory grows with the slots written).
    public init(layout: CacheLayout, capacity: Int) {
        pageFloats = layout.pageFloats
        var offset = 0
        var regions: [(offset: Int, floats: Int)] = []
        for n in layout.pageRegions {
            regions.append((offset, n))
            offset += n
        }
        self.regions = regions
        self.capacity = max(capacity, 1)
        (base, mappedBytes) = Self.map(floats: self.capacity * layout.pageFloats)
    }

    deinit { munmap(base, mappedBytes) }

    /// Anonymous memory, zero-filled on first touch; not counted against overcommit.
    private static func map(floats: Int) -> (UnsafeMutablePointer<Float>, Int) {
        (MappedBuffer.allocate(floats: floats), max(floats, 1) * MemoryLayout<Float>.stride)
    }

    /// The lowest free slot, or nil when all `capacity` are taken.
    public func allocate() -> Int? {
        let slot: Int
        if let s = freeSlots.popMin() {
            slot = s
        } else {
            guard highWater < capacity else { return nil }
            slot = highWater
            highWater += 1
        }
        liveCount += 1
        return slot
    }

    /// Frees a slot. When the last page goes, the pool's memory returns to the system (an
    /// idle server holds no page memory, as before pages lived in a pool).
    public func release(_ slot: Int) {
        precondition(slot >= 0 && slot < highWater, "release of slot \(slot) never allocated")
        liveCount -= 1
        freeSlots.push(slot)
        if liveCount == 0 {
            madvise(base, mappedBytes, MADV_DONTNEED)
            freeSlots = MinHeap()
            highWater = 0
        }
    }

    @inline(__always)
    func region(_ r: Int, slot: Int) -> UnsafeMutablePointer<Float> {
        base + regions[r].offset * capacity + slot * regions[r].floats
    }

    public func zero(_ slot: Int) {
        for r in regions.indices { region(r, slot: slot).update(repeating: 0, count: regions[r].floats) }
    }

    public func copy(_ source: Int, to destination: Int) {
        for r in regions.indices { region(r, slot: destination).update(from: region(r, slot: source), count: regions[r].floats) }
    }

    /// The page in `slot` as one buffer of `pageFloats` values, regions in layout order (what a
    /// page is on disk or on the wire).
    public func read(_ slot: Int, into out: UnsafeMutablePointer<Float>) {
        for r in regions.indices { (out + regions[r].offset).update(from: region(r, slot: slot), count: regions[r].floats) }
    }

    /// Writes a page read by `read` back into `slot`.
    public func write(_ slot: Int, from page: UnsafePointer<Float>) {
        for r in regions.indices { region(r, slot: slot).update(from: page + regions[r].offset, count: regions[r].floats) }
    }

    public func table(_ slots: [Int]) -> PageTable { PageTable(base: base, capacity: capacity, slots: slots) }

    /// Moves every page into a pool of `newCapacity` slots (tables made before are stale).
    public func grow(to newCapacity: Int) {
        guard newCapacity > capacity else { return }
        let (newBase, newBytes) = Self.map(floats: newCapacity * pageFloats)
        for (offset, floats) in regions {
            (newBase + offset * newCapacity).update(from: base + offset * capacity, count: highWater * floats)
        }
        munmap(base, mappedBytes)
        base = newBase
        mappedBytes = newBytes
        capacity = newCapacity
    }
}

/// Buffers with their own anonymous mapping: freed, their memory goes back to the system at
/// once. The cache's states and snapshots (~0.9 MB each on dsv4-tiny) are made and dropped by
/// the thousand during a long prompt; from malloc they left the heap holding what the budget
/// had let go (measured, f32 1M prompt under a 1.3 GB budget: 1.04 GB of heap for 0.70 GB in
/// use, so resident memory was the budget plus ~0.45 GB of freed snapshots).
public enum MappedBuffer {
    /// `floats` zero values, resident as they are touched.
    public static func allocate(floats: Int) -> UnsafeMutablePointer<Float> {
        let bytes = max(floats, 1) * MemoryLayout<Float>.stride
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { fatalError("cannot map a \(bytes)-byte buffer") }
        return p.bindMemory(to: Float.self, capacity: max(floats, 1))
    }

    /// Unmaps a buffer of `allocate(floats:)` (the same `floats`).
    public static func deallocate(_ p: UnsafeMutablePointer<Float>, floats: Int) {
        munmap(p, max(floats, 1) * MemoryLayout<Float>.stride)
    }
}

/// A binary min-heap of slot numbers.
struct MinHeap {
    private var a: [Int] = []

    mutating func push(_ x: Int) {
        a.append(x)
        var i = a.count - 1
        while i > 0, a[(i - 1) / 2] > a[i] {
            a.swapAt(i, (i - 1) / 2)
            i = (i - 1) / 2
        }
    }

    mutating func popMin() -> Int? {
        guard let top = a.first else { return nil }
        let last = a.removeLast()
        guard !a.isEmpty else { return top }
        a[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < a.count, a[l] < a[m] { m = l }
            if r < a.count, a[r] < a[m] { m = r }
            if m == i { break }
            a.swapAt(i, m)
            i = m
        }
        return top
    }
}
