// DSV4Server+Messages.swift: POST /v1/messages, the Anthropic Messages API (what
// Claude-Code-style agents speak), mapped onto the same V4 prompt and output parser.
import Engine
import Foundation
import Hummingbird
import NIOCore
import OpenAIAPI
import Tokenization

extension DSV4Server {
    /// The Anthropic request as an equivalent Chat Completions body.
    public static func chatBody(fromMessages body: JSONValue) throws -> JSONValue {
        var messages: [JSONValue] = []
        func text(_ v: JSONValue?, path: String) throws -> String {
            guard let v, !v.isNull else { return "" }
            if let s = v.stringValue { return s }
            guard let blocks = v.arrayValue else { throw APIError.badRequest("must be a string or an array of content blocks", param: path) }
            return try blocks.enumerated().map { i, b in
                switch b["type"]?.stringValue {
                case "text": guard let t = b["text"]?.stringValue else { throw APIError.badRequest("text block without text", param: "\(path)[\(i)]") }; return t
                case "image", "document": return "[Unsupported Image]"
                default: throw APIError.badRequest("unsupported content block type '\(b["type"]?.stringValue ?? "?")'", param: "\(path)[\(i)].type")
                }
            }.joined(separator: "\n\n")
        }
        if let sys = body["system"], !sys.isNull { messages.append(.object([("role", .s("system")), ("content", .s(try text(sys, path: "system")))])) }
        guard let list = body["messages"]?.arrayValue, !list.isEmpty else { throw APIError.badRequest("'messages' must be a non-empty array", param: "messages") }
        for (i, m) in list.enumerated() {
            let path = "messages[\(i)]"
            guard let role = m["role"]?.stringValue, role == "user" || role == "assistant" else {
                throw APIError.badRequest("role must be 'user' or 'assistant'", param: "\(path).role")
            }
            let content = m["content"]
            if let s = content?.stringValue {
                messages.append(.object([("role", .s(role)), ("content", .s(s))]))
                continue
            }
            guard let blocks = content?.arrayValue else { throw APIError.badRequest("'content' must be a string or an array", param: "\(path).content") }
            var texts: [String] = []
            var reasoning: String?
            var calls: [JSONValue] = []
            for (j, b) in blocks.enumerated() {
                let bp = "\(path).content[\(j)]"
                switch b["type"]?.stringValue {
                case "text": texts.append(b["text"]?.stringValue ?? "")
                case "thinking": reasoning = (reasoning ?? "") + (b["thinking"]?.stringValue ?? "")
                case "redacted_thinking": break
                case "image", "document": texts.append("[Unsupported Image]")
                case "tool_use":
                    guard role == "assistant", let id = b["id"]?.stringValue, let name = b["name"]?.stringValue else {
                        throw APIError.badRequest("tool_use needs id and name, in an assistant message", param: bp)
                    }
                    calls.append(.object([("id", .s(id)), ("type", .s("function")),
                                          ("function", .object([("name", .s(name)), ("arguments", .s((b["input"] ?? .object([])).promptJSON()))]))]))
                case "tool_result":
                    guard role == "user", let id = b["tool_use_id"]?.stringValue else {
                        throw APIError.badRequest("tool_result needs tool_use_id, in a user message", param: bp)
                    }
                    messages.append(.object([("role", .s("tool")), ("tool_call_id", .s(id)), ("content", .s(try text(b["content"], path: "\(bp).content")))]))
                default:
                    throw APIError.badRequest("unsupported content block type '\(b["type"]?.stringValue ?? "?")'", param: "\(bp).type")
                }
            }
            if role == "assistant" {
                var a: [(String, JSONValue)] = [("role", .s("assistant")), ("content", .s(texts.joined(separator: "\n\n")))]
                if let reasoning { a.append(("reasoning_content", .s(reasoning))) }
                if !calls.isEmpty { a.append(("tool_calls", .array(calls))) }
                messages.append(.object(a))
            } else if !texts.isEmpty {
                messages.append(.object([("role", .s("user")), ("content", .s(texts.joined(separator: "\n\n")))]))
            }
        }
        var chat: [(String, JSONValue)] = [("messages", .array(messages))]
        if let t = body["tools"], !t.isNull, t.arrayValue == nil { throw APIError.badRequest("'tools' must be an array", param: "tools") }
        if let tools = body["tools"]?.arrayValue, !tools.isEmpty {
            chat.append(("tools", .array(try tools.enumerated().map { i, t in
                guard let name = t["name"]?.stringValue else { throw APIError.badRequest("tool without a name", param: "tools[\(i)].name") }
                var fn: [(String, JSONValue)] = [("name", .s(name))]
                if let d = t["description"] { fn.append(("description", d)) }
                fn.append(("parameters", t["input_schema"] ?? .object([])))
                return .object([("type", .s("function")), ("function", .object(fn))])
            })))
        }
        // Anthropic semantics: no thinking unless asked for.
        let thinking = body["thinking"]?["type"]?.stringValue == "enabled"
        chat.append(("thinking", .object([("type", .s(thinking ? "enabled" : "disabled"))])))
        if let effort = body["output_config"]?["effort"]?.stringValue { chat.append(("reasoning_effort", .s(effort))) }
        for key in ["temperature", "top_p", "top_k", "max_tokens"] { if let v = body[key] { chat.append((key, v)) } }
        if let s = body["stop_sequences"], !s.isNull {
            guard let list = s.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                throw APIError.badRequest("'stop_sequences' must be an array of strings", param: "stop_sequences")
            }
            chat.append(("stop", s))
        }
        // Anthropic's tool_choice: auto / any (= required) / none / tool (a named function).
        if let tc = body["tool_choice"], !tc.isNull {
            switch tc["type"]?.stringValue {
            case "auto"?: chat.append(("tool_choice", .s("auto")))
            case "any"?: chat.append(("tool_choice", .s("required")))
            case "none"?: chat.append(("tool_choice", .s("none")))
            case "tool"?:
                guard let name = tc["name"]?.stringValue else { throw APIError.badRequest("tool_choice 'tool' needs a name", param: "tool_choice.name") }
                chat.append(("tool_choice", .object([("type", .s("function")), ("function", .object([("name", .s(name))]))])))
            default: throw APIError.badRequest("tool_choice.type must be 'auto', 'any', 'none' or 'tool'", param: "tool_choice.type")
            }
        }
        return .object(chat)
    }

    func messages(_ body: JSONValue, _ call: Call) async throws -> Response {
        try checkModel(body)
        guard body["max_tokens"]?.intValue != nil else { throw APIError.badRequest("'max_tokens' is required", param: "max_tokens") }
        let chat = try Self.chatBody(fromMessages: body)
        let plan = try planChat(chat)
        let stream = try FieldReader(body: body).bool("stream") ?? false
        let record = call.record
        let run = try GenerationRun(
            engine: engine, tokenizer: tokenizer, prompt: plan.prompt, parameters: plan.parameters, hiddenTokens: hiddenTokens,
            constraint: plan.constraint, record: record)
        let id = Self.requestID("msg_")
        let thinking = plan.conversation.thinking
        let tools = plan.parseToolCalls
        let stops = plan.parameters.stop
        if stream { record.update { $0.stream = true } }
        call.onClientGone(self) { run.cancel() }

        @Sendable func stopReason(_ f: FinishReason, _ acc: ChoiceAccumulator, _ text: String) -> String {
            if f == .length { return "max_tokens" }
            if acc.parser.sawToolCalls { return "tool_use" }
            return "end_turn"
        }
        _ = stops

        if !stream {
            var acc = ChoiceAccumulator(thinking: thinking, tools: tools)
            var promptTokens = plan.prompt.count, cached = 0, completion = 0
            var reason = "end_turn"
            try await withTaskCancellationHandler {
                for await u in run.updates() {
                    switch u {
                    case .started(let p, let c): promptTokens = p; cached = c
                    case .text(_, let t, _): for d in acc.parser.push(t) { acc.output.apply(d) }
                    case .finished(_, let f, let t):
                        for d in acc.parser.finish() { acc.output.apply(d) }
                        completion = t
                        reason = stopReason(f, acc, acc.output.content ?? "")
                        record.finished(reason)
                    case .keepAlive: break
                    case .failed(let e): throw Self.map(e)
                    }
                }
            } onCancel: { run.cancel() }
            metrics.tokens(prompt: promptTokens, completion: completion, cached: cached)
            var content: [JSONValue] = []
            if thinking, let r = acc.output.reasoning, !r.isEmpty { content.append(.object([("type", .s("thinking")), ("thinking", .s(r)), ("signature", .s(""))])) }
            if let c = acc.output.content, !c.isEmpty { content.append(.object([("type", .s("text")), ("text", .s(c))])) }
            for c in acc.output.toolCalls {
                let input = (try? JSONValue.parse(c.arguments)) ?? .object([("arguments", .s(c.arguments))])
                content.append(.object([("type", .s("tool_use")), ("id", .s(Self.requestID("toolu_"))), ("name", .s(c.name)), ("input", input)]))
            }
            return json(.object([
                ("id", .s(id)), ("type", .s("message")), ("role", .s("assistant")), ("model", .s(modelName)),
                ("content", .array(content)), ("stop_reason", .s(reason)), ("stop_sequence", .null),
                ("usage", .object([("input_tokens", .n(promptTokens - cached)), ("cache_read_input_tokens", .n(cached)), ("output_tokens", .n(completion))])),
            ]))
        }

        let promptCount = plan.prompt.count
        let keepAlive = Duration.seconds(options.keepAliveSeconds)
        let body = ResponseBody { [self] writer in
            defer { finish(record) }
            func event(_ name: String, _ v: JSONValue) -> String { "event: \(name)\ndata: \(v.promptJSON())\n\n" }
            var acc = ChoiceAccumulator(thinking: thinking, tools: tools)
            var blockIndex = -1
            var openBlock: String?  // "thinking", "text", "tool_use"
            var completion = 0, cached = 0
            func open(_ kind: String, extra: [(String, JSONValue)] = []) -> String {
                var s = ""
                if openBlock != nil { s += event("content_block_stop", .object([("type", .s("content_block_stop")), ("index", .n(blockIndex))])) }
                blockIndex += 1
                openBlock = kind
                var block: [(String, JSONValue)] = [("type", .s(kind))]
                switch kind {
                case "thinking": block.append(("thinking", .s("")))
                case "text": block.append(("text", .s("")))
                default: block += extra + [("input", .object([]))]
                }
                s += event("content_block_start", .object([("type", .s("content_block_start")), ("index", .n(blockIndex)), ("content_block", .object(block))]))
                return s
            }
            func delta(_ d: OutputDelta) -> String {
                var s = ""
                switch d {
                case .reasoning(let t) where !t.isEmpty:
                    if openBlock != "thinking" { s += open("thinking") }
                    s += event("content_block_delta", .object([("type", .s("content_block_delta")), ("index", .n(blockIndex)), ("delta", .object([("type", .s("thinking_delta")), ("thinking", .s(t))]))]))
                case .content(let t) where !t.isEmpty:
                    if openBlock != "text" { s += open("text") }
                    s += event("content_block_delta", .object([("type", .s("content_block_delta")), ("index", .n(blockIndex)), ("delta", .object([("type", .s("text_delta")), ("text", .s(t))]))]))
                case .toolCall(_, let name):
                    s += open("tool_use", extra: [("id", .s(Self.requestID("toolu_"))), ("name", .s(name))])
                case .toolArguments(_, let t):
                    s += event("content_block_delta", .object([("type", .s("content_block_delta")), ("index", .n(blockIndex)), ("delta", .object([("type", .s("input_json_delta")), ("partial_json", .s(t))]))]))
                default: break
                }
                return s
            }
            do {
                try await writer.write(ByteBuffer(string: event("message_start", .object([("type", .s("message_start")), ("message", .object([
                    ("id", .s(id)), ("type", .s("message")), ("role", .s("assistant")), ("model", .s(modelName)), ("content", .array([])),
                    ("stop_reason", .null), ("stop_sequence", .null), ("usage", .object([("input_tokens", .n(promptCount)), ("output_tokens", .n(0))])),
                ]))]))))
                var reason = "end_turn"
                for await u in run.updates(keepAliveEvery: keepAlive) {
                    var out = ""
                    switch u {
                    case .started(_, let c): cached = c
                    case .keepAlive: out = event("ping", .object([("type", .s("ping"))]))
                    case .text(_, let t, _): for d in acc.parser.push(t) { acc.output.apply(d); out += delta(d) }
                    case .finished(_, let f, let t):
                        for d in acc.parser.finish() { acc.output.apply(d); out += delta(d) }
                        completion = t
                        reason = stopReason(f, acc, "")
                        record.finished(reason)
                    case .failed(let e): out = event("error", .object([("type", .s("error")), ("error", .object([("type", .s("api_error")), ("message", .s(e.description))]))]))
                    }
                    if !out.isEmpty { try await writer.write(ByteBuffer(string: out)) }
                }
                var tail = ""
                if openBlock != nil { tail += event("content_block_stop", .object([("type", .s("content_block_stop")), ("index", .n(blockIndex))])) }
                tail += event("message_delta", .object([("type", .s("message_delta")), ("delta", .object([("stop_reason", .s(reason)), ("stop_sequence", .null)])),
                                                        ("usage", .object([("output_tokens", .n(completion)), ("cache_read_input_tokens", .n(cached))]))]))
                tail += event("message_stop", .object([("type", .s("message_stop"))]))
                try await writer.write(ByteBuffer(string: tail))
                try await writer.finish(nil)
            } catch {
                run.cancel()
                if record.clientGone() { metrics.clientCancelled() }
                throw error
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}
