// RequestRecord.swift: what one API request did (ids, tokens, phase times, outcome),
// filled in as it runs. It yields the response's `timings` object and, when the request
// completes (exactly once), its structured log line.
import Foundation
import Logging
import OpenAIAPI
import Synchronization

/// One API request's facts, shared by the handler, its generation pump and its stream.
final class RequestRecord: Sendable {
    struct State {
        var status = 200
        var stream = false
        /// Holds a generation slot (see `ServerMetrics.tryAdmit`) to give back on completion.
        var admitted = false
        var submitted: ContinuousClock.Instant?
        var started: ContinuousClock.Instant?
        var firstToken: ContinuousClock.Instant?
        var lastToken: ContinuousClock.Instant?
        var promptTokens = 0
        var cachedTokens = 0
        var completionTokens = 0
        var finishReasons: [String] = []
        var clientCancelled = false
        var errorCode: String?
        var completed = false
    }

    /// The `x-request-id`: the client's, or one made up.
    let requestID: String
    let endpoint: String
    let received = ContinuousClock.now
    private let state = Mutex(State())

    init(requestID: String, endpoint: String) {
        self.requestID = requestID
        self.endpoint = endpoint
    }

    func update(_ body: (inout State) -> Void) { state.withLock { body(&$0) } }
    var snapshot: State { state.withLock { $0 } }

    // MARK: - Generation events

    func submitted() { state.withLock { $0.submitted = .now } }
    func started(promptTokens: Int, cachedTokens: Int) {
        state.withLock { s in
            if s.started == nil { s.started = .now }
            s.promptTokens = promptTokens
            s.cachedTokens = cachedTokens
        }
    }
    func token() {
        let now = ContinuousClock.now
        state.withLock { s in
            if s.firstToken == nil { s.firstToken = now }
            s.lastToken = now
            s.completionTokens += 1
        }
    }
    func finished(_ reason: String) { state.withLock { $0.finishReasons.append(reason) } }

    /// Marks the record completed; false if it already was.
    func complete() -> (first: Bool, state: State) {
        state.withLock { s in
            defer { s.completed = true }
            return (!s.completed, s)
        }
    }

    var isCompleted: Bool { state.withLock { $0.completed } }

    /// Notes that the client went away; true the first time, and only while the request
    /// was still running.
    func clientGone() -> Bool {
        state.withLock { s in
            guard !s.completed, !s.clientCancelled else { return false }
            s.clientCancelled = true
            return true
        }
    }

    // MARK: - Timings

    struct Timings {
        var queueMs = 0.0
        var promptMs = 0.0
        var predictedMs = 0.0
        var totalMs = 0.0
    }

    static func ms(_ a: ContinuousClock.Instant?, _ b: ContinuousClock.Instant?) -> Double {
        guard let a, let b, b > a else { return 0 }
        return (b - a).seconds * 1000
    }

    func timings(_ s: State, now: ContinuousClock.Instant = .now) -> Timings {
        Timings(
            queueMs: Self.ms(s.submitted, s.started), promptMs: Self.ms(s.submitted, s.firstToken),
            predictedMs: Self.ms(s.firstToken, s.lastToken), totalMs: Self.ms(received, now))
    }

    /// llama-server's `timings` object (plus `queue_ms`). Prompt: submission to the first
    /// token, over the prompt tokens not found in the prefix cache. Predicted: first to last
    /// token, over every generated token.
    /// NOTE: the engine reports admission (`started`) only when the step that first ran the
    /// request ends, together with its first token for a one-chunk prompt, so queueing cannot
    /// be split from prefill exactly: `prompt_ms` includes it, and `queue_ms` (submission to
    /// that report) is an upper bound that includes the first prefill step.
    /// NOTE: like llama-server, `predicted_n` counts the first token although it came out of
    /// the prefill, so one-token answers report `predicted_ms` 0 and no rate.
    var timingsJSON: JSONValue {
        let s = snapshot
        let t = timings(s)
        let promptN = max(0, s.promptTokens - s.cachedTokens)
        func r(_ v: Double) -> JSONValue { .number(String(format: "%.3f", v)) }
        func perToken(_ ms: Double, _ n: Int) -> JSONValue { n > 0 ? r(ms / Double(n)) : .n(0) }
        func perSecond(_ ms: Double, _ n: Int) -> JSONValue { ms > 0 ? r(Double(n) * 1000 / ms) : .n(0) }
        return .object([
            ("cache_n", .n(s.cachedTokens)), ("queue_ms", r(t.queueMs)),
            ("prompt_n", .n(promptN)), ("prompt_ms", r(t.promptMs)),
            ("prompt_per_token_ms", perToken(t.promptMs, promptN)), ("prompt_per_second", perSecond(t.promptMs, promptN)),
            ("predicted_n", .n(s.completionTokens)), ("predicted_ms", r(t.predictedMs)),
            ("predicted_per_token_ms", perToken(t.predictedMs, s.completionTokens)),
            ("predicted_per_second", perSecond(t.predictedMs, s.completionTokens)),
        ])
    }

    // MARK: - Log line

    /// The fields of the request's log line.
    func logMetadata(_ s: State) -> Logger.Metadata {
        let t = timings(s)
        func ms(_ v: Double) -> Logger.MetadataValue { .stringConvertible((v * 1000).rounded() / 1000) }
        var m: Logger.Metadata = [
            "request_id": .string(requestID), "endpoint": .string(endpoint), "status": .stringConvertible(s.status),
            "stream": .stringConvertible(s.stream), "prompt_tokens": .stringConvertible(s.promptTokens),
            "completion_tokens": .stringConvertible(s.completionTokens), "cached_tokens": .stringConvertible(s.cachedTokens),
            "queue_ms": ms(t.queueMs), "prefill_ms": ms(t.promptMs), "decode_ms": ms(t.predictedMs), "total_ms": ms(t.totalMs),
            "client_cancelled": .stringConvertible(s.clientCancelled),
        ]
        if !s.finishReasons.isEmpty { m["finish_reason"] = .string(s.finishReasons.joined(separator: ",")) }
        if let e = s.errorCode { m["error"] = .string(e) }
        return m
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
