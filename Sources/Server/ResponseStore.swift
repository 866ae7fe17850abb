// ResponseStore.swift: stored Responses (`store: true`) for GET /v1/responses/{id} and for
// continuing a conversation with `previous_response_id`: in memory, least recently used
// first out, bounded by a count and by bytes, so stored responses cannot exhaust the server.
import Foundation
import OpenAIAPI

final class ResponseStore: @unchecked Sendable {
    struct Entry {
        /// The response object (what GET returns).
        let response: JSONValue
        /// Every input item of the conversation up to and including this response's output:
        /// what a continuation puts before its own input.
        let history: [JSONValue]
        let bytes: Int
        var lastUse: UInt64
    }

    let maxCount: Int
    let maxBytes: Int
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    /// Ids by last use (oldest first); `entries` says which are live.
    private var order: [(id: String, use: UInt64)] = []
    private var orderStart = 0
    private var clock: UInt64 = 0
    private(set) var bytes = 0

    init(maxCount: Int, maxBytes: Int) {
        self.maxCount = maxCount
        self.maxBytes = maxBytes
    }

    var count: Int { lock.withLock { entries.count } }
    var totalBytes: Int { lock.withLock { bytes } }

    /// Prometheus lines: stored responses and their bytes, with the bounds.
    var metricsText: String {
        let (n, b) = lock.withLock { (entries.count, bytes) }
        return """
            # HELP dsv4_responses_stored Stored responses (store: true), and the most kept.
            # TYPE dsv4_responses_stored gauge
            dsv4_responses_stored{kind="count"} \(n)
            dsv4_responses_stored{kind="max_count"} \(maxCount)
            dsv4_responses_stored{kind="bytes"} \(b)
            dsv4_responses_stored{kind="max_bytes"} \(maxBytes)

            """
    }

    /// Stores a response (nothing when it alone exceeds the byte bound).
    func put(id: String, response: JSONValue, history: [JSONValue]) {
        let size = response.promptJSON().utf8.count + history.reduce(0) { $0 + $1.promptJSON().utf8.count }
        guard size <= maxBytes, maxCount > 0 else { return }
        lock.withLock {
            if let old = entries.removeValue(forKey: id) { bytes -= old.bytes }
            clock += 1
            entries[id] = Entry(response: response, history: history, bytes: size, lastUse: clock)
            order.append((id, clock))
            bytes += size
            while entries.count > maxCount || bytes > maxBytes { evictOldest() }
            compactOrder()
        }
    }

    /// The entry of `id` (marking it used), or nil when unknown or evicted.
    func get(_ id: String) -> Entry? {
        lock.withLock {
            guard var e = entries[id] else { return nil }
            clock += 1
            e.lastUse = clock
            entries[id] = e
            order.append((id, clock))
            compactOrder()
            return e
        }
    }

    /// Removes `id`; false when it was not stored.
    func delete(_ id: String) -> Bool {
        lock.withLock {
            guard let e = entries.removeValue(forKey: id) else { return false }
            bytes -= e.bytes
            return true
        }
    }

    /// Drops the least recently used entry (order entries that are stale are skipped).
    private func evictOldest() {
        while orderStart < order.count {
            let (id, use) = order[orderStart]
            orderStart += 1
            if let e = entries[id], e.lastUse == use {
                entries[id] = nil
                bytes -= e.bytes
                return
            }
        }
    }

    /// Keeps the use log within a small multiple of the live entries.
    private func compactOrder() {
        guard order.count - orderStart > 2 * entries.count + 64 else { return }
        order = order[orderStart...].filter { entries[$0.id]?.lastUse == $0.use }
        orderStart = 0
    }
}
