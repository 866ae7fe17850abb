// GenerationRun.swift: one request's trip through the engine, as text: incremental
// UTF-8-safe detokenization per choice, end-of-sequence and stop tokens kept out of the
// text, text cut at the stop string the engine found (with hold-back so a partial stop
// string is never sent), and keep-alive ticks while the prompt is still being prefilled.
import Engine
import Foundation
import Tokenization

enum GenerationUpdate: Sendable {
    case started(promptTokens: Int, cachedTokens: Int)
    /// New visible text of a choice, and the token that produced it (for logprobs).
    case text(choice: Int, String, token: SampledToken?)
    /// `stopString`: the stop string that ended the choice, if one did.
    case finished(choice: Int, reason: FinishReason, completionTokens: Int, stopString: String?)
    case keepAlive
    /// The prompt is partly prefilled (see `EngineEvent.prefill`).
    case prefill(processed: Int, total: Int, cached: Int)
    case failed(EngineError)
}

final class GenerationRun: @unchecked Sendable {
    let engine: EngineLoop
    let tokenizer: BPETokenizer
    let parameters: SamplingParameters
    let hiddenTokens: Set<Int>
    let id: Int
    let record: RequestRecord?
    private let events: AsyncStream<EngineEvent>

    /// Submits the request (throws before any work when it is invalid).
    init(
        engine: EngineLoop, tokenizer: BPETokenizer, prompt: [Int], parameters: SamplingParameters, hiddenTokens: Set<Int>,
        constraint: (any TokenConstraintFactory)? = nil, record: RequestRecord? = nil
    ) throws {
        self.engine = engine
        self.tokenizer = tokenizer
        self.parameters = parameters
        self.hiddenTokens = hiddenTokens.union(parameters.stopTokenIds)
        self.record = record
        record?.submitted()
        (id, events) = try engine.submit(prompt: prompt, parameters: parameters, constraint: constraint)
    }

    func cancel() { engine.cancel(id) }

    struct ChoiceState {
        var decoder = IncrementalDecoder()
        /// Text not sent yet.
        var pending = ""
        var tokens = 0

        /// Adds a token's text and returns what may be sent now. The engine, not this, looks
        /// for stop strings; a stop string it finds ends inside the newest token's text and
        /// starts at most `holdBack` characters before it, so that much stays pending until
        /// the next token (or the finish, which cuts at the stop string).
        mutating func release(adding text: String, holdBack: Int, stops: Bool) -> String {
            pending += text
            guard stops else { defer { pending = "" }; return pending }
            let keep = text.count + holdBack
            guard pending.count > keep else { return "" }
            let cut = pending.index(pending.endIndex, offsetBy: -keep)
            defer { pending = String(pending[cut...]) }
            return String(pending[..<cut])
        }
    }

    /// The request's updates; ends after every choice finished or on failure.
    func updates(keepAliveEvery interval: Duration? = nil) -> AsyncStream<GenerationUpdate> {
        let (stream, continuation) = AsyncStream<GenerationUpdate>.makeStream()
        let tokenizer = tokenizer
        let stops = parameters.stop
        let holdBack = max(0, (stops.map(\.count).max() ?? 0) - 1)
        let hidden = hiddenTokens
        let events = events
        let record = record
        let started = Flag()
        let ticker: Task<Void, Never>? = interval.map { iv in
            Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: iv)
                    if started.isSet || Task.isCancelled { return }
                    continuation.yield(.keepAlive)
                }
            }
        }
        let pump = Task {
            var choices: [Int: ChoiceState] = [:]
            for await e in events {
                switch e {
                case .started(let p, let c):
                    record?.started(promptTokens: p, cachedTokens: c)
                    continuation.yield(.started(promptTokens: p, cachedTokens: c))
                case .token(let k, let s):
                    started.set()
                    record?.token()
                    var st = choices[k] ?? ChoiceState()
                    st.tokens += 1
                    let text = hidden.contains(s.token) ? "" : st.decoder.push(s.token, tokenizer: tokenizer)
                    let release = st.release(adding: text, holdBack: holdBack, stops: !stops.isEmpty)
                    choices[k] = st
                    continuation.yield(.text(choice: k, release, token: s))
                case .finished(let k, let reason, let stop):
                    var st = choices[k] ?? ChoiceState()
                    st.pending += st.decoder.finish()
                    var tail = st.pending
                    if let stop, let r = tail.range(of: stop) {
                        // The engine found `stop` ending in the last token: the text ends before it.
                        tail = String(tail[..<r.lowerBound])
                    }
                    if !tail.isEmpty { continuation.yield(.text(choice: k, tail, token: nil)) }
                    continuation.yield(.finished(choice: k, reason: reason, completionTokens: st.tokens, stopString: stop))
                    choices[k] = nil
                case .failed(let err):
                    continuation.yield(.failed(err))
                case .prefill(let done, let total, let cached):
                    continuation.yield(.prefill(processed: done, total: total, cached: cached))
                }
            }
            ticker?.cancel()
            continuation.finish()
        }
        continuation.onTermination = { [weak self] reason in
            ticker?.cancel()
            if case .cancelled = reason {
                pump.cancel()
                self?.cancel()
            }
        }
        return stream
    }
}

/// A thread-safe one-way flag.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
