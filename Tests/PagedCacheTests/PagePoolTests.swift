// PagePoolTests.swift: the region-major page pool: every region of a page is its own, a run of
// consecutive slots holds each region contiguously, slots are handed out lowest first, and
// copying, zeroing, reading, writing and growing keep each page's values.
import ModelRuntime
import Testing

@Suite struct PagePoolTests {
    let layout = CacheLayout(pageTokens: 8, pageFloats: 10, stateFloats: 1, pageRegions: [3, 0, 5, 2])

    /// Writes value 1000·slot + i at position i of the page in `slot` (through `write`).
    func fill(_ pool: PagePool, _ slot: Int) {
        let page = (0..<layout.pageFloats).map { Float(1000 * slot + $0) }
        page.withUnsafeBufferPointer { pool.write(slot, from: $0.baseAddress!) }
    }

    func read(_ pool: PagePool, _ slot: Int) -> [Float] {
        var out = [Float](repeating: -1, count: layout.pageFloats)
        out.withUnsafeMutableBufferPointer { pool.read(slot, into: $0.baseAddress!) }
        return out
    }

    @Test func regionsOfConsecutiveSlotsAreContiguous() {
        let pool = PagePool(layout: layout, capacity: 6)
        #expect(pool.regions.map(\.floats) == [3, 5, 2])  // empty regions dropped
        let slots = (0..<6).map { _ in pool.allocate()! }
        #expect(slots == Array(0..<6))
        #expect(pool.allocate() == nil)
        for s in slots { fill(pool, s) }
        let table = pool.table(slots)
        for (r, region) in pool.regions.enumerated() {
            let first = table.region(page: 0, offset: region.offset, floats: region.floats)
            for p in 0..<6 {
                // Page p's region r starts right after page p−1's: one run over all pages.
                #expect(table.region(page: p, offset: region.offset, floats: region.floats) == first + p * region.floats, "region \(r)")
                for i in 0..<region.floats { #expect(first[p * region.floats + i] == Float(1000 * p + region.offset + i)) }
            }
        }
        for s in slots { #expect(read(pool, s) == (0..<10).map { Float(1000 * s + $0) }) }
    }

    @Test func lowestFreeSlotFirstAndPagesKeepTheirValues() {
        let pool = PagePool(layout: layout, capacity: 8)
        let slots = (0..<5).map { _ in pool.allocate()! }
        for s in slots { fill(pool, s) }
        pool.release(3)
        pool.release(1)
        #expect(pool.allocate() == 1 && pool.allocate() == 3 && pool.allocate() == 5)
        #expect(pool.liveCount == 6)
        pool.copy(4, to: 1)
        #expect(read(pool, 1) == read(pool, 4))
        pool.zero(4)
        #expect(read(pool, 4) == [Float](repeating: 0, count: 10))
        #expect(read(pool, 2) == (0..<10).map { Float(2000 + $0) })
    }

    @Test func growingKeepsEveryPage() {
        let pool = PagePool(layout: layout, capacity: 3)
        for _ in 0..<3 { fill(pool, pool.allocate()!) }
        pool.grow(to: 7)
        #expect(pool.capacity == 7)
        for s in 0..<3 { #expect(read(pool, s) == (0..<10).map { Float(1000 * s + $0) }) }
        #expect(pool.allocate() == 3)
    }

    /// Releasing the last page hands the memory back: the pool starts again from slot 0, zeroed.
    @Test func emptyPoolStartsAfresh() {
        let pool = PagePool(layout: layout, capacity: 4)
        let a = pool.allocate()!, b = pool.allocate()!
        fill(pool, a)
        fill(pool, b)
        pool.release(b)
        pool.release(a)
        #expect(pool.liveCount == 0 && pool.allocate() == 0)
        #expect(read(pool, 0) == [Float](repeating: 0, count: 10))
    }
}
