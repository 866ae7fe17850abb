// DSV4Server+Messages.swift: POST /v1/messages, the Anthropic Messages API (what
// Claude-Code-style agents speak): the request mapped onto the equivalent Chat Completions
// body (the same V4 prompt), generated through the driver with `MessagesEncoder`.
import Engine
import Foundation
import Hummingbird
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
        // As deepseek-recipe's MessagesRequest (the V4 default): thinking unless disabled.
        let thinking = body["thinking"]?["type"]?.stringValue != "disabled"
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
        let plan = try planChat(try Self.chatBody(fromMessages: body))
        let stream = try FieldReader(body: body).bool("stream") ?? false
        let job = GenerationJob(
            prompt: plan.prompt, parameters: plan.parameters, constraint: plan.job.constraint, stream: stream,
            returnProgress: try FieldReader(body: body).bool("return_progress") ?? false)
        var encoder = MessagesEncoder(
            id: Self.requestID("msg_"), model: modelName, thinking: plan.conversation.thinking, parseToolCalls: plan.parseToolCalls)
        encoder.conversation = plan.conversation
        return try await drive(job, encoder, call: call)
    }
}
