// MessagesEncoder.swift: Anthropic Messages answers: the output parsed into thinking, text
// and tool_use blocks, as one `message` or as the event stream (message_start,
// content_block_start / _delta / _stop, message_delta, message_stop).
import Engine
import OpenAIAPI
import Tokenization

struct MessagesEncoder: GenerationEncoder {
    let id: String
    let model: String
    let thinking: Bool
    var choice: ChoiceAccumulator
    var stopReason = "end_turn"
    var stopSequence: String?
    /// Streaming: index and kind ("thinking", "text", "tool_use") of the open content block.
    var blockIndex = -1
    var openBlock: String?
    /// The request's conversation (set for the prefix cache's next-turn warm-up).
    var conversation: ChatConversation?

    static let latencyMetric: String? = nil

    init(id: String, model: String, thinking: Bool, parseToolCalls: Bool) {
        self.id = id
        self.model = model
        self.thinking = thinking
        choice = ChoiceAccumulator(thinking: thinking, tools: parseToolCalls)
    }

    func nextTurnPrefix() -> String? { ChatEncoder.nextTurnPrefix(conversation, answer: choice) }

    // MARK: - Streaming

    func streamOpening(usage: GenerationUsage) -> String {
        event("message_start", [("type", .s("message_start")), ("message", .object([
            ("id", .s(id)), ("type", .s("message")), ("role", .s("assistant")), ("model", .s(model)), ("content", .array([])),
            ("stop_reason", .null), ("stop_sequence", .null),
            ("usage", .object([("input_tokens", .n(usage.promptTokens)), ("output_tokens", .n(0))])),
        ]))])
    }

    mutating func text(_ text: String, token: SampledToken?, choice _: Int, streaming: Bool) -> String {
        let deltas = choice.parser.push(text)
        choice.apply(deltas)
        return streaming ? events(deltas) : ""
    }

    mutating func events(_ deltas: [OutputDelta]) -> String {
        var out = ""
        for d in deltas { out += delta(d) }
        return out
    }

    mutating func finish(
        choice _: Int, reason: FinishReason, stopString: String?, streaming: Bool, timings: JSONValue?
    ) -> (reason: String, events: String) {
        let deltas = choice.parser.finish()
        choice.apply(deltas)
        if reason == .length {
            stopReason = "max_tokens"
        } else if choice.parser.sawToolCalls {
            stopReason = "tool_use"
        } else if let stopString {
            stopReason = "stop_sequence"
            stopSequence = stopString
        } else {
            stopReason = "end_turn"
        }
        return (stopReason, streaming ? events(deltas) : "")
    }

    func streamKeepAlive() -> String { event("ping", [("type", .s("ping"))]) }

    /// Not an Anthropic event: sent only to clients that ask with `return_progress`.
    func streamProgress(_ progress: PromptProgress) -> String {
        event("prompt_progress", [("type", .s("prompt_progress")), ("prompt_progress", progress.json)])
    }

    func streamError(_ error: APIError, requestID: String) -> String {
        "event: error\ndata: \(error.body(requestID: requestID, dialect: .anthropic))\n\n"
    }

    func streamClosing(usage: GenerationUsage, timings: JSONValue) -> String {
        var out = openBlock == nil ? "" : event("content_block_stop", [("type", .s("content_block_stop")), ("index", .n(blockIndex))])
        out += event("message_delta", [
            ("type", .s("message_delta")),
            ("delta", .object([("stop_reason", .s(stopReason)), ("stop_sequence", stopSequence.map { .s($0) } ?? .null)])),
            ("usage", .object([("output_tokens", .n(usage.completionTokens)), ("cache_read_input_tokens", .n(usage.cachedTokens))])),
        ])
        return out + event("message_stop", [("type", .s("message_stop"))])
    }

    func event(_ name: String, _ fields: [(String, JSONValue)]) -> String { "event: \(name)\ndata: \(JSONValue.object(fields).promptJSON())\n\n" }

    /// Closes the open block (if any) and opens one of `kind`.
    mutating func open(_ kind: String, extra: [(String, JSONValue)] = []) -> String {
        var s = openBlock == nil ? "" : event("content_block_stop", [("type", .s("content_block_stop")), ("index", .n(blockIndex))])
        blockIndex += 1
        openBlock = kind
        var block: [(String, JSONValue)] = [("type", .s(kind))]
        switch kind {
        case "thinking": block.append(("thinking", .s("")))
        case "text": block.append(("text", .s("")))
        default: block += extra + [("input", .object([]))]
        }
        s += event("content_block_start", [("type", .s("content_block_start")), ("index", .n(blockIndex)), ("content_block", .object(block))])
        return s
    }

    func blockDelta(_ delta: [(String, JSONValue)]) -> String {
        event("content_block_delta", [("type", .s("content_block_delta")), ("index", .n(blockIndex)), ("delta", .object(delta))])
    }

    /// A parser delta as stream events.
    mutating func delta(_ d: OutputDelta) -> String {
        switch d {
        case .reasoning(let t) where !t.isEmpty:
            return (openBlock == "thinking" ? "" : open("thinking")) + blockDelta([("type", .s("thinking_delta")), ("thinking", .s(t))])
        case .content(let t) where !t.isEmpty:
            return (openBlock == "text" ? "" : open("text")) + blockDelta([("type", .s("text_delta")), ("text", .s(t))])
        case .toolCall(_, let name):
            return open("tool_use", extra: [("id", .s(DSV4Server.requestID("toolu_"))), ("name", .s(name))])
        case .toolArguments(_, let t):
            return blockDelta([("type", .s("input_json_delta")), ("partial_json", .s(t))])
        default:
            return ""
        }
    }

    // MARK: - Whole response

    func response(usage: GenerationUsage, timings: JSONValue) -> JSONValue {
        var content: [JSONValue] = []
        let out = choice.output
        if thinking, let r = out.reasoning, !r.isEmpty { content.append(.object([("type", .s("thinking")), ("thinking", .s(r)), ("signature", .s(""))])) }
        if let c = out.content, !c.isEmpty { content.append(.object([("type", .s("text")), ("text", .s(c))])) }
        for c in out.toolCalls {
            let input = (try? JSONValue.parse(c.arguments)) ?? .object([("arguments", .s(c.arguments))])
            content.append(.object([("type", .s("tool_use")), ("id", .s(DSV4Server.requestID("toolu_"))), ("name", .s(c.name)), ("input", input)]))
        }
        return .object([
            ("id", .s(id)), ("type", .s("message")), ("role", .s("assistant")), ("model", .s(model)),
            ("content", .array(content)), ("stop_reason", .s(stopReason)), ("stop_sequence", stopSequence.map { .s($0) } ?? .null),
            ("usage", .object([
                ("input_tokens", .n(usage.promptTokens - usage.cachedTokens)), ("cache_read_input_tokens", .n(usage.cachedTokens)),
                ("output_tokens", .n(usage.completionTokens)),
            ])),
        ])
    }
}
