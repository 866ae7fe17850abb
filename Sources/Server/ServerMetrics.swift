// ServerMetrics.swift: request counters and latency histograms, rendered with the engine's
// own figures as Prometheus text at GET /metrics.
import Engine
import Foundation
import Synchronization

public final class ServerMetrics: Sendable {
    struct State {
        var requests: [String: Int] = [:]  // "endpoint|status" → count
        var promptTokens = 0
        var completionTokens = 0
        var cachedTokens = 0
        var inFlight = 0
        var peakInFlight = 0
        var rejected = 0
        var cancelledByClient = 0
        var latency: [String: [Int]] = [:]  // name → bucket counts (+ overflow)
        var latencySum: [String: Double] = [:]
    }

    static let buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
    private let state = Mutex(State())

    public init() {}

    func record(endpoint: String, status: Int) { state.withLock { $0.requests["\(endpoint)|\(status)", default: 0] += 1 } }
    func observe(_ name: String, seconds: Double) {
        state.withLock { s in
            var counts = s.latency[name] ?? [Int](repeating: 0, count: Self.buckets.count + 1)
            let i = Self.buckets.firstIndex { seconds <= $0 } ?? Self.buckets.count
            counts[i] += 1
            s.latency[name] = counts
            s.latencySum[name, default: 0] += seconds
        }
    }
    func tokens(prompt: Int, completion: Int, cached: Int) {
        state.withLock {
            $0.promptTokens += prompt
            $0.completionTokens += completion
            $0.cachedTokens += cached
        }
    }
    /// Takes one of `limit` generation slots; false (and nothing taken) when all are in use.
    /// NOTE: check and increment happen under one lock, so concurrent requests cannot
    /// overshoot the limit.
    func tryAdmit(limit: Int) -> Bool {
        state.withLock { s in
            guard s.inFlight < limit else { return false }
            s.inFlight += 1
            s.peakInFlight = max(s.peakInFlight, s.inFlight)
            return true
        }
    }
    /// Gives back a slot taken by `tryAdmit`.
    func release() { state.withLock { $0.inFlight -= 1 } }
    func rejected() { state.withLock { $0.rejected += 1 } }
    func clientCancelled() { state.withLock { $0.cancelledByClient += 1 } }
    public var inFlightCount: Int { state.withLock { $0.inFlight } }

    /// Prometheus exposition text.
    func render(engine e: EngineMetrics) -> String {
        let s = state.withLock { $0 }
        var out = ""
        func line(_ name: String, _ help: String, _ type: String, _ samples: [(String, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, v) in samples { out += "\(name)\(labels) \(v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v))\n" }
        }
        line("dsv4_requests_total", "HTTP requests by endpoint and status.", "counter",
             s.requests.sorted { $0.key < $1.key }.map { k, v in
                 let p = k.split(separator: "|")
                 return ("{endpoint=\"\(p[0])\",status=\"\(p[1])\"}", Double(v))
             })
        line("dsv4_requests_in_flight", "Generation requests being served.", "gauge", [("", Double(s.inFlight))])
        line("dsv4_requests_in_flight_peak", "Most generation requests served at once since start.", "gauge", [("", Double(s.peakInFlight))])
        line("dsv4_requests_rejected_total", "Generation requests refused with 429 (at capacity).", "counter", [("", Double(s.rejected))])
        line("dsv4_requests_cancelled_by_client_total", "Requests whose client went away.", "counter", [("", Double(s.cancelledByClient))])
        line("dsv4_prompt_tokens_total", "Prompt tokens of finished requests.", "counter", [("", Double(s.promptTokens))])
        line("dsv4_prompt_cached_tokens_total", "Prompt tokens served from the prefix cache.", "counter", [("", Double(s.cachedTokens))])
        line("dsv4_completion_tokens_total", "Generated tokens of finished requests.", "counter", [("", Double(s.completionTokens))])
        line("dsv4_engine_requests", "Requests waiting or running in the engine.", "gauge", [("", Double(e.waitingOrRunningRequests))])
        line("dsv4_engine_running_sequences", "Sequences holding cache.", "gauge", [("", Double(e.runningSequences))])
        line("dsv4_engine_batch_size", "Sequences in the last step.", "gauge", [("", Double(e.counters.lastBatchSize))])
        line("dsv4_engine_batch_tokens", "Tokens in the last step.", "gauge", [("", Double(e.counters.lastBatchTokens))])
        line("dsv4_engine_steps_total", "Model steps.", "counter", [("", Double(e.counters.steps))])
        line("dsv4_engine_preemptions_total", "Sequences preempted under memory pressure.", "counter", [("", Double(e.counters.preemptions))])
        line("dsv4_engine_generated_tokens_total", "Tokens sampled.", "counter", [("", Double(e.counters.generatedTokens))])
        line("dsv4_prefill_tokens", "Prompt tokens of requests still prefilling: computed, and still to compute.", "gauge", [
            ("{state=\"done\"}", Double(e.prefillDoneTokens)), ("{state=\"remaining\"}", Double(e.prefillRemainingTokens)),
        ])
        line("dsv4_cache_bytes", "KV/state cache bytes by use.", "gauge", [
            ("{kind=\"used\"}", Double(e.cacheUsedBytes)), ("{kind=\"budget\"}", Double(e.cacheBudgetBytes)),
        ])
        line("dsv4_cache_block_bytes", "Bytes of one cache block by kind.", "gauge", [
            ("{kind=\"history_page\"}", Double(e.pageBytes)), ("{kind=\"state\"}", Double(e.stateBytes)),
        ])
        line("dsv4_cache_bytes_per_token", "History-page bytes per token of context, by cache dtype (--kv-cache-dtype).", "gauge", [
            ("{dtype=\"\(e.cacheStorage)\"}", e.pageBytesPerToken),
        ])
        line("dsv4_prefix_cache_pages", "Full history pages held by the prefix cache.", "gauge", [("", Double(e.cachedPages))])
        line("dsv4_prefix_cache_tails", "Snapshots inside a page (the end of a prompt or of an output) held by the prefix cache.", "gauge",
             [("", Double(e.cachedTails))])
        line("dsv4_prefix_cache_queried_tokens_total", "Prompt tokens looked up in the prefix cache.", "counter", [("", Double(e.prefixQueriedTokens))])
        line("dsv4_prefix_cache_hit_tokens_total", "Prompt tokens found in the prefix cache.", "counter", [("", Double(e.prefixHitTokens))])
        line("dsv4_prefix_cache_hit_rate", "Hit tokens / queried tokens.", "gauge",
             [("", e.prefixQueriedTokens == 0 ? 0 : Double(e.prefixHitTokens) / Double(e.prefixQueriedTokens))])
        // Per block kind and per cache kind; kinds are the model layout's (CacheKind).
        line("dsv4_cache_blocks", "Live cache blocks by block kind.", "gauge",
             e.cacheBlocks.sorted { $0.key < $1.key }.map { ("{block=\"\($0.key)\"}", Double($0.value)) })
        line("dsv4_cache_block_used_bytes", "Bytes of live cache blocks by block kind.", "gauge",
             e.cacheBlockBytes.sorted { $0.key < $1.key }.map { ("{block=\"\($0.key)\"}", Double($0.value)) })
        line("dsv4_cache_kind_used_bytes", "Cache bytes in use by kind of state.", "gauge",
             e.cacheKinds.map { ("{kind=\"\($0.kind)\"}", Double($0.usedBytes)) })
        line("dsv4_cache_kind_capacity_bytes", "Most bytes of each kind the shared budget can hold.", "gauge",
             e.cacheKinds.map { ("{kind=\"\($0.kind)\"}", Double($0.capacityBytes)) })
        line("dsv4_prefix_cache_kind_queried_bytes_total", "Bytes of each kind prompts could have reused.", "counter",
             e.cacheKinds.map { ("{kind=\"\($0.kind)\"}", Double($0.prefixQueriedBytes)) })
        line("dsv4_prefix_cache_kind_hit_bytes_total", "Bytes of each kind served from the prefix cache.", "counter",
             e.cacheKinds.map { ("{kind=\"\($0.kind)\"}", Double($0.prefixHitBytes)) })
        renderDisk(e, line: line)
        for (name, counts) in s.latency.sorted(by: { $0.key < $1.key }) {
            let metric = "dsv4_\(name)_seconds"
            out += "# HELP \(metric) Latency histogram.\n# TYPE \(metric) histogram\n"
            var cum = 0
            for (i, b) in Self.buckets.enumerated() {
                cum += counts[i]
                out += "\(metric)_bucket{le=\"\(b)\"} \(cum)\n"
            }
            cum += counts[Self.buckets.count]
            out += "\(metric)_bucket{le=\"+Inf\"} \(cum)\n\(metric)_sum \(s.latencySum[name] ?? 0)\n\(metric)_count \(cum)\n"
        }
        return out
    }

    /// The disk tier's lines (`dsv4 serve --cache-dir`).
    private func renderDisk(_ e: EngineMetrics, line: (String, String, String, [(String, Double)]) -> Void) {
        guard let d = e.disk else { return }
        line("dsv4_disk_cache_enabled", "1 while the disk tier serves (0: turned off after an error, see the log).", "gauge", [("", d.enabled ? 1 : 0)])
        line("dsv4_disk_cache_io_uring", "1 when disk I/O goes through io_uring (0: pread/pwrite).", "gauge", [("", d.usesIOUring ? 1 : 0)])
        line("dsv4_disk_cache_entries", "Entries (page + snapshot) on disk.", "gauge", [("", Double(d.entries))])
        line("dsv4_disk_cache_bytes", "Disk tier bytes by use.", "gauge", [("{kind=\"used\"}", Double(d.usedBytes)), ("{kind=\"budget\"}", Double(d.budgetBytes))])
        line("dsv4_disk_cache_hit_tokens_total", "Prompt tokens past the RAM hit served from disk.", "counter", [("", Double(d.hitTokens))])
        line("dsv4_disk_cache_miss_tokens_total", "Reusable prompt tokens past the RAM hit that the disk did not have.", "counter", [("", Double(d.missTokens))])
        line("dsv4_disk_cache_read_bytes_total", "Bytes read from the disk tier.", "counter", [("", Double(d.readBytes))])
        line("dsv4_disk_cache_written_bytes_total", "Bytes written to the disk tier.", "counter", [("", Double(d.writtenBytes))])
        line("dsv4_disk_cache_entries_read_total", "Entries read back from disk.", "counter", [("", Double(d.entriesRead))])
        line("dsv4_disk_cache_entries_written_total", "Entries written to disk.", "counter", [("", Double(d.entriesWritten))])
        line("dsv4_disk_cache_corrupt_entries_total", "Damaged entries skipped and removed (recomputed instead).", "counter", [("", Double(d.corruptEntries))])
        line("dsv4_disk_cache_evicted_entries_total", "Entries removed to stay within --cache-disk-bytes.", "counter", [("", Double(d.evictedEntries))])
        line("dsv4_disk_cache_io_seconds_total", "Seconds spent in disk reads and writes.", "counter", [
            ("{op=\"read\"}", d.readSeconds), ("{op=\"write\"}", d.writeSeconds),
        ])
    }
}
