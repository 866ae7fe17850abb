// ResponsesEncoder.swift: OpenAI Responses answers: the output parsed into `reasoning`,
// `message` (output_text) and `function_call` items, as one `response` object or as the
// typed event stream (response.created, response.in_progress, output_item.added / .done,
// content_part.added / .done, output_text / reasoning_text / function_call_arguments deltas,
// response.completed or response.incomplete), each event with its sequence_number. Items
// open and close in output order, so reasoning, text and tool-call deltas never interleave
// inside one item, and tool-call markup only ever reaches function_call items.
import Engine
import Foundation
import OpenAIAPI
import Tokenization

/// One output item as it is built.
struct ResponsesItem {
    enum Kind: String { case reasoning, message, functionCall = "function_call" }
    let kind: Kind
    let id: String
    var text = ""
    var name = ""
    var callID = ""
    var done = false

    /// The item as JSON (`status`: "in_progress", "completed" or "incomplete").
    func json(status: String) -> JSONValue {
        switch kind {
        case .reasoning:
            return .object([
                ("type", .s("reasoning")), ("id", .s(id)), ("status", .s(status)),
                ("content", .array(done ? [part()] : [])), ("summary", .array([])),
            ])
        case .message:
            return .object([
                ("type", .s("message")), ("id", .s(id)), ("status", .s(status)), ("role", .s("assistant")),
                ("content", .array(done ? [part()] : [])),
            ])
        case .functionCall:
            return .object([
                ("type", .s("function_call")), ("id", .s(id)), ("status", .s(status)), ("call_id", .s(callID)), ("name", .s(name)),
                ("arguments", .s(done ? text : "")),
            ])
        }
    }

    /// The content part of a reasoning or message item (empty text while it is being added).
    func part(empty: Bool = false) -> JSONValue {
        let t = JSONValue.s(empty ? "" : text)
        return kind == .reasoning
            ? .object([("type", .s("reasoning_text")), ("text", t)])
            : .object([("type", .s("output_text")), ("annotations", .array([])), ("logprobs", .array([])), ("text", t)])
    }
}

struct ResponsesEncoder: GenerationEncoder {
    let id: String
    let created: Int
    /// The request's settings that a response reports (model, instructions, tools…).
    let echo: [(String, JSONValue)]
    let parallelToolCalls: Bool
    var choice: ChoiceAccumulator
    /// The request's conversation (set for the prefix cache's next-turn warm-up).
    var conversation: ChatConversation?
    var items: [ResponsesItem] = []
    var sequence = 0
    var incomplete = false
    var reasoningTokens = 0
    /// Arguments of tool calls past the first when parallel calls are off: dropped.
    var skippingCall = false
    /// Called with the finished response and its output items (to store them).
    var onComplete: (@Sendable (JSONValue, [JSONValue]) -> Void)?

    static let latencyMetric: String? = "responses"

    init(id: String, created: Int, echo: [(String, JSONValue)], thinking: Bool, parseToolCalls: Bool, parallelToolCalls: Bool) {
        self.id = id
        self.created = created
        self.echo = echo
        self.parallelToolCalls = parallelToolCalls
        choice = ChoiceAccumulator(thinking: thinking, tools: parseToolCalls)
    }

    func nextTurnPrefix() -> String? { ChatEncoder.nextTurnPrefix(conversation, answer: choice) }

    // MARK: - Events

    mutating func event(_ type: String, _ fields: [(String, JSONValue)]) -> String {
        defer { sequence += 1 }
        let body = JSONValue.object([("type", .s(type))] + fields + [("sequence_number", .n(sequence))])
        return "event: \(type)\ndata: \(body.promptJSON())\n\n"
    }

    /// response.created and response.in_progress.
    mutating func streamOpening(usage: GenerationUsage) -> String {
        let r = responseObject(status: "in_progress", usage: nil)
        return event("response.created", [("response", r)]) + event("response.in_progress", [("response", r)])
    }

    mutating func text(_ text: String, token: SampledToken?, choice _: Int, streaming: Bool) -> String {
        var out = ""
        if token != nil, choice.parser.inReasoning { reasoningTokens += 1 }
        let deltas = choice.parser.push(text)
        choice.apply(deltas)
        for d in deltas { out += apply(d, streaming: streaming) }
        return out
    }

    mutating func finish(
        choice _: Int, reason: FinishReason, stopString: String?, streaming: Bool, timings: JSONValue?
    ) -> (reason: String, events: String) {
        var out = ""
        let deltas = choice.parser.finish()
        choice.apply(deltas)
        for d in deltas { out += apply(d, streaming: streaming) }
        incomplete = reason == .length
        out += closeItem(streaming: streaming)
        return (incomplete ? "max_output_tokens" : choice.parser.sawToolCalls ? "tool_calls" : "stop", out)
    }

    /// A parser delta: into the open item of its kind (opening it, and closing the one before).
    mutating func apply(_ d: OutputDelta, streaming: Bool) -> String {
        var out = ""
        switch d {
        case .reasoning(let t) where !t.isEmpty:
            if items.last?.kind != .reasoning || items.last!.done { out += openItem(.reasoning, streaming: streaming) }
            items[items.count - 1].text += t
            if streaming { out += event("response.reasoning_text.delta", location() + [("content_index", .n(0)), ("delta", .s(t))]) }
        case .content(let t) where !t.isEmpty:
            if items.last?.kind != .message || items.last!.done { out += openItem(.message, streaming: streaming) }
            items[items.count - 1].text += t
            if streaming {
                out += event("response.output_text.delta", location() + [("content_index", .n(0)), ("delta", .s(t)), ("logprobs", .array([]))])
            }
        case .toolCall(let i, let name):
            skippingCall = i > 0 && !parallelToolCalls
            guard !skippingCall else { break }
            // `choice.apply` gave every call of this batch its id already: take this call's.
            let callID = i < choice.toolIDs.count ? choice.toolIDs[i] : DSV4Server.requestID("call_")
            out += openItem(.functionCall, streaming: streaming, name: name, callID: callID)
        case .toolArguments(_, let t) where !skippingCall:
            items[items.count - 1].text += t
            if streaming { out += event("response.function_call_arguments.delta", location() + [("delta", .s(t))]) }
        default: break
        }
        return out
    }

    func location() -> [(String, JSONValue)] { [("item_id", .s(items.last!.id)), ("output_index", .n(items.count - 1))] }

    mutating func openItem(_ kind: ResponsesItem.Kind, streaming: Bool, name: String = "", callID: String = "") -> String {
        var out = closeItem(streaming: streaming)
        let prefix = ["reasoning": "rs", "message": "msg", "function_call": "fc"][kind.rawValue]!
        items.append(ResponsesItem(kind: kind, id: "\(prefix)_\(id.dropFirst(5))_\(items.count)", name: name, callID: callID))
        guard streaming else { return out }
        out += event("response.output_item.added", [("output_index", .n(items.count - 1)), ("item", items.last!.json(status: "in_progress"))])
        if kind != .functionCall {
            out += event("response.content_part.added", location() + [("content_index", .n(0)), ("part", items.last!.part(empty: true))])
        }
        return out
    }

    /// Closes the open item (its .done events when streaming).
    mutating func closeItem(streaming: Bool) -> String {
        guard let last = items.last, !last.done else { return "" }
        items[items.count - 1].done = true
        guard streaming else { return "" }
        let item = items[items.count - 1]
        var out = ""
        switch item.kind {
        case .reasoning:
            out += event("response.reasoning_text.done", location() + [("content_index", .n(0)), ("text", .s(item.text))])
        case .message:
            out += event("response.output_text.done", location() + [("content_index", .n(0)), ("text", .s(item.text)), ("logprobs", .array([]))])
        case .functionCall:
            out += event("response.function_call_arguments.done", location() + [("arguments", .s(item.text))])
        }
        if item.kind != .functionCall { out += event("response.content_part.done", location() + [("content_index", .n(0)), ("part", item.part())]) }
        return out + event("response.output_item.done", [("output_index", .n(items.count - 1)), ("item", item.json(status: itemStatus(item)))])
    }

    /// The output items as a finished response lists them.
    func finishedItems() -> [JSONValue] {
        items.map { item -> JSONValue in
            var i = item
            i.done = true
            return i.json(status: itemStatus(item))
        }
    }

    /// Cut short by max_output_tokens, the last item (reasoning, text or a call's arguments) is incomplete.
    func itemStatus(_ item: ResponsesItem) -> String { incomplete && item.id == items.last?.id ? "incomplete" : "completed" }

    func streamKeepAlive() -> String { ": keep-alive\n\n" }

    func streamError(_ error: APIError, requestID: String) -> String {
        let body = JSONValue.object([
            ("type", .s("error")), ("code", error.code.map { .s($0) } ?? .s(error.type)), ("message", .s(error.publicMessage(requestID: requestID))),
            ("param", error.param.map { .s($0) } ?? .null), ("sequence_number", .n(sequence)),
        ])
        return "event: error\ndata: \(body.promptJSON())\n\n"
    }

    mutating func streamClosing(usage: GenerationUsage, timings: JSONValue) -> String {
        let out = closeItem(streaming: true)
        let r = responseObject(status: incomplete ? "incomplete" : "completed", usage: usage)
        onComplete?(r, finishedItems())
        return out + event(incomplete ? "response.incomplete" : "response.completed", [("response", r)])
    }

    // MARK: - Whole response

    func response(usage: GenerationUsage, timings: JSONValue) -> JSONValue {
        let r = responseObject(status: incomplete ? "incomplete" : "completed", usage: usage)
        onComplete?(r, finishedItems())
        return r
    }

    /// The `response` object (`usage` nil while in progress).
    func responseObject(status: String, usage: GenerationUsage?) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("id", .s(id)), ("object", .s("response")), ("created_at", .n(created)), ("status", .s(status)),
            ("completed_at", status == "in_progress" ? .null : .n(Int(Date().timeIntervalSince1970))), ("error", .null),
            ("incomplete_details", status == "incomplete" ? .object([("reason", .s("max_output_tokens"))]) : .null),
        ]
        fields += echo
        let output: [JSONValue] = status == "in_progress" ? [] : finishedItems()
        fields.append(("output", .array(output)))
        if let usage {
            fields.append(("usage", .object([
                ("input_tokens", .n(usage.promptTokens)), ("input_tokens_details", .object([("cached_tokens", .n(usage.cachedTokens))])),
                ("output_tokens", .n(usage.completionTokens)), ("output_tokens_details", .object([("reasoning_tokens", .n(reasoningTokens))])),
                ("total_tokens", .n(usage.promptTokens + usage.completionTokens)),
            ])))
        } else {
            fields.append(("usage", .null))
        }
        return .object(fields)
    }
}
