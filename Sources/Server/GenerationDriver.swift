// GenerationDriver.swift: the one generation driver behind every API handler. A handler
// parses its request into a `GenerationJob` and an encoder of its API's responses; the
// driver submits the job, follows the generation (one JSON answer, or SSE as it goes),
// cancels it when the client goes away, and keeps usage, finish reasons, timings and
// metrics. Chat Completions, Completions, Messages and Responses are encoders.
import Engine
import Foundation
import Hummingbird
import NIOCore
import OpenAIAPI
import Tokenization

/// What a handler asks the driver to generate.
struct GenerationJob: Sendable {
    let prompt: [Int]
    let parameters: SamplingParameters
    let constraint: ConstraintFactory?
    let stream: Bool
    /// llama-server's `return_progress`: stream `prompt_progress` while the prompt is prefilled.
    var returnProgress = false
}

/// How far a prompt's prefill is (llama-server's `prompt_progress`): `processed` of `total`
/// prompt tokens are in the cache, `cache` of them from the prefix cache, `timeMs` since the
/// request arrived.
struct PromptProgress: Sendable {
    let total: Int
    let cache: Int
    let processed: Int
    let timeMs: Double

    var json: JSONValue {
        .object([("total", .n(total)), ("cache", .n(cache)), ("processed", .n(processed)), ("time_ms", .number(String(format: "%.1f", timeMs)))])
    }
}

/// Token counts of one request.
struct GenerationUsage: Sendable {
    var promptTokens: Int
    var cachedTokens = 0
    var completionTokens = 0

    /// OpenAI's `usage` object (chat and completions).
    var openAIJSON: JSONValue {
        .object([
            ("prompt_tokens", .n(promptTokens)), ("completion_tokens", .n(completionTokens)),
            ("total_tokens", .n(promptTokens + completionTokens)),
            ("prompt_tokens_details", .object([("cached_tokens", .n(cachedTokens))])),
        ])
    }
}

/// One API's side of a generation: how its text and finishes become that API's JSON (a
/// whole response) or SSE events (a stream). The driver calls the `stream…` methods only
/// when streaming, and `response` only when not.
protocol GenerationEncoder: SendableMetatype {
    /// The histogram of whole-request seconds this API reports (nil: none).
    static var latencyMetric: String? { get }
    /// SSE sent before any generation event (Anthropic's message_start); "" for none.
    mutating func streamOpening(usage: GenerationUsage) -> String
    /// New visible text of `choice`, and the token behind it (nil for a finishing flush).
    /// Returns the SSE text to send (ignored when not streaming).
    mutating func text(_ text: String, token: SampledToken?, choice: Int, streaming: Bool) -> String
    /// `choice` finished. Returns the API's name for the reason (for the log) and the SSE
    /// text to send; `timings` is set on the request's last finish.
    mutating func finish(
        choice: Int, reason: FinishReason, stopString: String?, streaming: Bool, timings: JSONValue?
    ) -> (reason: String, events: String)
    /// SSE sent while the prompt is still being prefilled.
    func streamKeepAlive() -> String
    /// SSE that reports prefill progress (only when the request set `return_progress`).
    func streamProgress(_ progress: PromptProgress) -> String
    /// SSE that reports a failure after the stream began.
    func streamError(_ error: APIError, requestID: String) -> String
    /// SSE that ends the stream (usage, `[DONE]`, message_stop…).
    mutating func streamClosing(usage: GenerationUsage, timings: JSONValue) -> String
    /// The whole answer (not streaming).
    func response(usage: GenerationUsage, timings: JSONValue) -> JSONValue
    /// The prompt text a next turn of this conversation begins with (the conversation and
    /// this answer as the chat template renders them back), or nil when the API has none.
    func nextTurnPrefix() -> String?
}

extension GenerationEncoder {
    func nextTurnPrefix() -> String? { nil }
}

extension DSV4Server {
    /// Runs `job` for the request of `call`, answering through `encoder`.
    func drive<E: GenerationEncoder>(_ job: GenerationJob, _ encoder: E, call: Call) async throws -> Response {
        let record = call.record
        let run = try GenerationRun(
            engine: engine, tokenizer: tokenizer, prompt: job.prompt, parameters: job.parameters, hiddenTokens: hiddenTokens,
            constraint: job.constraint, record: record)
        if job.stream { record.update { $0.stream = true } }
        call.onClientGone(self) { run.cancel() }
        if job.stream { return streamed(run, job, encoder, record) }
        var encoder = encoder
        var tally = GenerationTally(usage: GenerationUsage(promptTokens: job.prompt.count), choices: job.parameters.n)
        let updates = run.updates()
        try await withTaskCancellationHandler {
            for await u in updates {
                if case .failed(let e) = u { throw Self.map(e) }
                _ = apply(u, to: &encoder, &tally, record: record, streaming: false)
            }
        } onCancel: { run.cancel() }
        account(tally.usage, latencyMetric: E.latencyMetric, since: record.received)
        await warmNextTurn(encoder.nextTurnPrefix())
        return json(encoder.response(usage: tally.usage, timings: record.timingsJSON))
    }

    /// The SSE response: the encoder's events as the generation goes.
    private func streamed<E: GenerationEncoder>(_ run: GenerationRun, _ job: GenerationJob, _ encoder: E, _ record: RequestRecord) -> Response {
        nonisolated(unsafe) let initial = encoder
        let keepAlive = Duration.seconds(options.keepAliveSeconds)
        let promptTokens = job.prompt.count, choices = job.parameters.n, latencyMetric = E.latencyMetric
        let progress = job.returnProgress
        let body = ResponseBody { [self] writer in
            defer { finish(record) }
            var encoder = initial
            var tally = GenerationTally(usage: GenerationUsage(promptTokens: promptTokens), choices: choices)
            do {
                let opening = encoder.streamOpening(usage: tally.usage)
                if !opening.isEmpty { try await writer.write(ByteBuffer(string: opening)) }
                for await u in run.updates(keepAliveEvery: keepAlive) {
                    var out = progress ? progressEvent(u, &tally, encoder, record) : ""
                    out += apply(u, to: &encoder, &tally, record: record, streaming: true)
                    if !out.isEmpty { try await writer.write(ByteBuffer(string: out)) }
                }
                await warmNextTurn(encoder.nextTurnPrefix())
                try await writer.write(ByteBuffer(string: encoder.streamClosing(usage: tally.usage, timings: record.timingsJSON)))
                try await writer.finish(nil)
                account(tally.usage, latencyMetric: latencyMetric, since: record.received)
            } catch {
                // The client went away: stop generating and free the cache now.
                run.cancel()
                if record.clientGone() { metrics.clientCancelled() }
                throw error
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    /// Computes `text` (a next turn's prefix) into the prefix cache and waits until its end
    /// state is cached, so that a next turn sent after this answer resumes at the end of this
    /// one. Mostly the finished output's own cached end state serves it and one token is
    /// computed; where the template renders the answer back in other tokens (dropped
    /// reasoning, re-serialised tool calls, text that tokenizes differently), the differing
    /// part is recomputed. Best effort: a prefix that cannot fit is skipped.
    func warmNextTurn(_ text: String?) async {
        guard let text, let events = try? engine.warm(prompt: tokenizer.encode(text)).events else { return }
        for await _ in events {}
    }

    /// The `prompt_progress` event an update implies: at admission (what the prefix cache
    /// had), after each prefill step, and once complete before the first text.
    private func progressEvent<E: GenerationEncoder>(
        _ u: GenerationUpdate, _ tally: inout GenerationTally, _ encoder: E, _ record: RequestRecord
    ) -> String {
        let total = tally.usage.promptTokens
        let processed: Int
        switch u {
        case .started(_, let c): processed = c
        case .prefill(let done, _, _): processed = done
        case .text where !tally.prefillReported: processed = total
        default: return ""
        }
        if processed >= total { tally.prefillReported = true }
        let ms = RequestRecord.ms(record.received, .now)
        return encoder.streamProgress(PromptProgress(
            total: total, cache: tally.usage.cachedTokens, processed: min(processed, total), timeMs: ms))
    }

    /// One update into the encoder and the tally; returns the SSE text it makes.
    private func apply<E: GenerationEncoder>(
        _ u: GenerationUpdate, to encoder: inout E, _ tally: inout GenerationTally, record: RequestRecord, streaming: Bool
    ) -> String {
        switch u {
        case .started(let p, let c):
            tally.usage.promptTokens = p
            tally.usage.cachedTokens = c
            return ""
        case .keepAlive:
            return streaming ? encoder.streamKeepAlive() : ""
        case .prefill:
            return ""
        case .text(let k, let text, let token):
            return encoder.text(text, token: token, choice: k, streaming: streaming)
        case .finished(let k, let reason, let tokens, let stop):
            tally.usage.completionTokens += tokens
            tally.finished += 1
            let last = tally.finished == tally.choices
            let (name, events) = encoder.finish(
                choice: k, reason: reason, stopString: stop, streaming: streaming, timings: last ? record.timingsJSON : nil)
            record.finished(name)
            return events
        case .failed(let e):
            let error = Self.map(e)
            record.update { $0.errorCode = error.code ?? error.type }
            logInternal(error, requestID: record.requestID)
            return encoder.streamError(error, requestID: record.requestID)
        }
    }

    /// Counts a completed generation's tokens and (for APIs that report one) its latency.
    private func account(_ usage: GenerationUsage, latencyMetric: String?, since start: ContinuousClock.Instant) {
        metrics.tokens(prompt: usage.promptTokens, completion: usage.completionTokens, cached: usage.cachedTokens)
        if let name = latencyMetric { metrics.observe(name, seconds: (ContinuousClock.now - start).seconds) }
    }
}

/// What the driver counts while a request runs.
struct GenerationTally {
    var usage: GenerationUsage
    /// Choices the request generates, and how many have finished.
    let choices: Int
    var finished = 0
    /// A complete `prompt_progress` was sent.
    var prefillReported = false
}

extension GenerationEncoder {
    /// No progress events (APIs without them).
    func streamProgress(_ progress: PromptProgress) -> String { "" }
}

/// The SSE framing Chat Completions and Completions share: `data:` chunks of one object type
/// with the request's id, model and creation time; keep-alive comments; an optional usage
/// chunk and `[DONE]` at the end.
protocol OpenAIStreamEncoder: GenerationEncoder {
    /// The chunks' `object` ("chat.completion.chunk", "text_completion").
    static var chunkObject: String { get }
    var id: String { get }
    var model: String { get }
    var created: Int { get }
    var includeUsage: Bool { get }
}

extension OpenAIStreamEncoder {
    /// The fields every chunk starts with.
    var header: [(String, JSONValue)] { [("id", .s(id)), ("object", .s(Self.chunkObject)), ("created", .n(created)), ("model", .s(model))] }

    func event(_ fields: [(String, JSONValue)]) -> String { "data: " + JSONValue.object(fields).promptJSON() + "\n\n" }

    func streamKeepAlive() -> String { ": keep-alive\n\n" }

    func streamProgress(_ progress: PromptProgress) -> String {
        event(header + [("choices", .array([])), ("prompt_progress", progress.json)])
    }

    func streamError(_ error: APIError, requestID: String) -> String {
        "data: " + error.body(requestID: requestID, dialect: .openAI) + "\n\n"
    }

    func streamClosing(usage: GenerationUsage, timings: JSONValue) -> String {
        let usageChunk = includeUsage ? event(header + [("choices", .array([])), ("usage", usage.openAIJSON), ("timings", timings)]) : ""
        return usageChunk + "data: [DONE]\n\n"
    }
}

/// A token's log-probability entries, shared by the APIs that report them.
struct LogprobText {
    let tokenizer: BPETokenizer

    /// The token's text (its bytes, decoded leniently).
    func text(_ token: Int) -> String { String(decoding: tokenizer.bytes(of: token), as: UTF8.self) }

    /// Chat Completions' entry: token, logprob, bytes and top_logprobs.
    func chatEntry(_ s: SampledToken) -> JSONValue {
        func entry(_ token: Int, _ lp: Float) -> [(String, JSONValue)] {
            let bytes = tokenizer.bytes(of: token)
            return [("token", .s(String(decoding: bytes, as: UTF8.self))), ("logprob", .f(lp)), ("bytes", .array(bytes.map { .n(Int($0)) }))]
        }
        return .object(entry(s.token, s.logprob) + [("top_logprobs", .array(s.top.map { .object(entry($0.token, $0.logprob)) }))])
    }

    /// Completions' entry: the token's text, its logprob, and {text: logprob} of the top ones.
    func completionEntry(_ s: SampledToken) -> (token: JSONValue, logprob: JSONValue, top: JSONValue) {
        (.s(text(s.token)), .f(s.logprob), .object(s.top.map { (text($0.token), .f($0.logprob)) }))
    }
}
