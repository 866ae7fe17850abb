// ChatEncoder.swift: Chat Completions answers: the output parsed per choice into reasoning,
// content and tool calls, as one `chat.completion` or as `chat.completion.chunk` events.
import Engine
import OpenAIAPI
import Tokenization

/// What one choice accumulates (non-streaming), or tracks (streaming).
struct ChoiceAccumulator {
    var parser: OutputParser
    var output: ParsedOutput
    var toolIDs: [String] = []
    var logprobs: [JSONValue] = []
    var finish: String?

    init(thinking: Bool, tools: Bool) {
        parser = OutputParser(thinking: thinking, parseToolCalls: tools)
        output = ParsedOutput(thinking: thinking)
    }

    /// Applies parser deltas; a new tool call gets its id.
    mutating func apply(_ deltas: [OutputDelta]) {
        for d in deltas {
            output.apply(d)
            if case .toolCall = d { toolIDs.append(DSV4Server.requestID("call_")) }
        }
    }
}

struct ChatEncoder: OpenAIStreamEncoder {
    static let chunkObject = "chat.completion.chunk"
    let id: String
    let model: String
    let created: Int
    let logprobs: LogprobText
    let thinking: Bool
    let wantLogprobs: Bool
    let includeUsage: Bool
    var choices: [ChoiceAccumulator]
    /// Choices whose first (role) chunk was sent.
    var opened = Set<Int>()
    /// The request's conversation (set for the prefix cache's next-turn warm-up).
    var conversation: ChatConversation?

    static let latencyMetric: String? = "chat_completion"

    init(
        id: String, model: String, created: Int, logprobs: LogprobText, thinking: Bool, parseToolCalls: Bool, n: Int, wantLogprobs: Bool,
        includeUsage: Bool
    ) {
        self.id = id
        self.model = model
        self.created = created
        self.logprobs = logprobs
        self.thinking = thinking
        self.wantLogprobs = wantLogprobs
        self.includeUsage = includeUsage
        choices = (0..<n).map { _ in ChoiceAccumulator(thinking: thinking, tools: parseToolCalls) }
    }

    /// The conversation with choice 0's answer appended, rendered up to the next turn's
    /// messages (the generation opener left off). nil for n > 1 or an assistant prefix.
    func nextTurnPrefix() -> String? {
        guard choices.count == 1 else { return nil }
        return Self.nextTurnPrefix(conversation, answer: choices[0])
    }

    /// `conversation` with `a` appended as the assistant's turn, rendered up to the next
    /// turn's messages; nil without a conversation or after an assistant prefix.
    static func nextTurnPrefix(_ conversation: ChatConversation?, answer a: ChoiceAccumulator) -> String? {
        guard var next = conversation, next.messages.last?.prefix != true else { return nil }
        var m = ChatMessage(role: .assistant, content: a.output.content ?? "")
        m.reasoning = a.output.reasoning
        m.toolCalls = zip(a.output.toolCalls, a.toolIDs).map { ChatToolCall(id: $1, name: $0.name, arguments: $0.arguments) }
        next.messages.append(m)
        let text = PromptRenderer.render(next)
        let opener = PromptRenderer.assistant + (next.thinking ? PromptRenderer.thinkOpen : PromptRenderer.thinkClose)
        guard text.hasSuffix(opener) else { return nil }
        return String(text.dropLast(opener.count))
    }

    // MARK: - Streaming

    func streamOpening(usage: GenerationUsage) -> String { "" }

    mutating func text(_ text: String, token: SampledToken?, choice k: Int, streaming: Bool) -> String {
        let deltas = choices[k].parser.push(text)
        let before = choices[k].toolIDs.count
        choices[k].apply(deltas)
        guard streaming else {
            if wantLogprobs, let token { choices[k].logprobs.append(logprobs.chatEntry(token)) }
            return ""
        }
        var out = ""
        if opened.insert(k).inserted {
            out += chunk(k, [("role", .s("assistant")), ("content", .s(""))] + (thinking ? [("reasoning_content", .s(""))] : []))
        }
        // The token's logprobs ride on its first delta (or on an empty delta of their own).
        var lp: JSONValue = wantLogprobs && token != nil ? .object([("content", .array([logprobs.chatEntry(token!)]))]) : .null
        var toolIDs = choices[k].toolIDs[before...].makeIterator()
        for d in deltas {
            guard let delta = Self.deltaJSON(d, newToolID: { toolIDs.next() ?? "" }) else { continue }
            out += chunk(k, delta, logprobs: lp)
            lp = .null
        }
        if !lp.isNull { out += chunk(k, [], logprobs: lp) }
        return out
    }

    mutating func finish(
        choice k: Int, reason: FinishReason, stopString: String?, streaming: Bool, timings: JSONValue?
    ) -> (reason: String, events: String) {
        let deltas = choices[k].parser.finish()
        let before = choices[k].toolIDs.count
        choices[k].apply(deltas)
        let name: String =
            switch reason {
            case .length: "length"
            case .stop: choices[k].parser.sawToolCalls ? "tool_calls" : "stop"
            default: "stop"  // cancelled
            }
        choices[k].finish = name
        guard streaming else { return (name, "") }
        var out = ""
        var toolIDs = choices[k].toolIDs[before...].makeIterator()
        for d in deltas {
            if let delta = Self.deltaJSON(d, newToolID: { toolIDs.next() ?? "" }) { out += chunk(k, delta) }
        }
        // The last choice's finish chunk carries the request's timings.
        out += chunk(k, [], finish: name, extra: timings.map { [("timings", $0)] } ?? [])
        return (name, out)
    }

    /// One delta as chat.completion.chunk JSON.
    func chunk(_ k: Int, _ delta: [(String, JSONValue)], finish: String? = nil, logprobs: JSONValue = .null, extra: [(String, JSONValue)] = []) -> String {
        event(header + [
            ("choices", .array([.object([
                ("index", .n(k)), ("delta", .object(delta)), ("logprobs", logprobs), ("finish_reason", finish.map { .s($0) } ?? .null),
            ])])),
        ] + extra)
    }

    /// A parser delta as the fields of a chunk's `delta` (nil: nothing to send).
    static func deltaJSON(_ d: OutputDelta, newToolID: () -> String) -> [(String, JSONValue)]? {
        switch d {
        case .reasoning(let s): return s.isEmpty ? nil : [("reasoning_content", .s(s))]
        case .content(let s): return s.isEmpty ? nil : [("content", .s(s))]
        case .toolCall(let i, let name):
            return [("tool_calls", .array([.object([
                ("index", .n(i)), ("id", .s(newToolID())), ("type", .s("function")),
                ("function", .object([("name", .s(name)), ("arguments", .s(""))])),
            ])]))]
        case .toolArguments(let i, let s):
            return [("tool_calls", .array([.object([("index", .n(i)), ("function", .object([("arguments", .s(s))]))])]))]
        }
    }

    // MARK: - Whole response

    func response(usage: GenerationUsage, timings: JSONValue) -> JSONValue {
        let list: [JSONValue] = choices.enumerated().map { k, a in
            var message: [(String, JSONValue)] = [("role", .s("assistant")), ("content", .s(a.output.content ?? ""))]
            if thinking { message.append(("reasoning_content", .s(a.output.reasoning ?? ""))) }
            if !a.output.toolCalls.isEmpty {
                message.append(("tool_calls", .array(a.output.toolCalls.enumerated().map { i, c in
                    .object([("id", .s(a.toolIDs[i])), ("type", .s("function")),
                             ("function", .object([("name", .s(c.name)), ("arguments", .s(c.arguments))]))])
                })))
            }
            return .object([
                ("index", .n(k)), ("message", .object(message)),
                ("logprobs", wantLogprobs ? .object([("content", .array(a.logprobs))]) : .null),
                ("finish_reason", .s(a.finish ?? "stop")),
            ])
        }
        return .object([
            ("id", .s(id)), ("object", .s("chat.completion")), ("created", .n(created)), ("model", .s(model)),
            ("choices", .array(list)), ("usage", usage.openAIJSON), ("system_fingerprint", .s("dsv4")), ("timings", timings),
        ])
    }
}
