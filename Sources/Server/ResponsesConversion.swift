// ResponsesConversion.swift: an OpenAI Responses request as the equivalent Chat Completions
// body, item by item as deepseek-recipe's ResponsesRequest converts it (so the V4 prompt is
// byte-identical; tools/render_goldens.py --api responses checks it):
// * `instructions` is a leading system message; `developer` messages become user messages;
// * assistant-side items in a row (reasoning, assistant messages, function calls) form one
//   assistant turn; a reasoning item after text or calls, or a message after calls, starts
//   the next one; reasoning texts join with "\n", message texts with "\n\n"; a reasoning item
//   without reasoning text (only a summary or encrypted content) adds nothing;
// * `function_call_output` items are tool messages; summaries of reasoning are not shown;
// * built-in tools (web search, file search, computer use…) are dropped as the recipe drops
//   them; custom and namespace tools, and unknown item or part types, are a 400 naming them.
import OpenAIAPI

extension DSV4Server {
    /// Tool types of the Responses API that the model cannot call here; the recipe drops them.
    static let droppedResponsesTools: Set<String> = [
        "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11", "file_search",
        "computer_use_preview", "computer_use", "code_interpreter", "image_generation", "local_shell", "shell", "mcp", "apply_patch",
    ]

    /// The Responses request (with `history`: items of stored earlier turns, put before its
    /// input) as an equivalent Chat Completions body.
    public static func chatBody(fromResponses body: JSONValue, history: [JSONValue] = []) throws -> JSONValue {
        var chat: [(String, JSONValue)] = [("messages", .array(try responsesMessages(body, history: history)))]
        if let t = body["tools"], !t.isNull {
            guard let list = t.arrayValue else { throw APIError.badRequest("'tools' must be an array", param: "tools") }
            let tools = try list.enumerated().compactMap { try responsesTool($1, path: "tools[\($0)]") }
            if !tools.isEmpty { chat.append(("tools", .array(tools))) }
        }
        if let tc = body["tool_choice"], !tc.isNull { chat.append(("tool_choice", try responsesToolChoice(tc))) }
        if let r = body["reasoning"], !r.isNull {
            guard r.objectValue != nil else { throw APIError.badRequest("'reasoning' must be an object", param: "reasoning") }
            if let e = r["effort"], !e.isNull {
                guard let s = e.stringValue, ReasoningEffort(rawValue: s) != nil else {
                    throw APIError.badRequest("reasoning.effort must be one of none, minimal, low, medium, high, xhigh, max", param: "reasoning.effort")
                }
                chat.append(("reasoning_effort", .s(s)))
            }
        }
        if let f = try responsesFormat(body["text"]) { chat.append(("response_format", f)) }
        if let m = body["max_output_tokens"] { chat.append(("max_tokens", m)) }
        for key in ["temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty", "stop", "stop_token_ids"] {
            if let v = body[key] { chat.append((key, v)) }
        }
        return .object(chat)
    }

    /// `text.format` as a chat `response_format` (nil for plain text).
    static func responsesFormat(_ text: JSONValue?) throws -> JSONValue? {
        guard let text, !text.isNull else { return nil }
        guard text.objectValue != nil else { throw APIError.badRequest("'text' must be an object", param: "text") }
        guard let f = text["format"], !f.isNull else { return nil }
        switch f["type"]?.stringValue {
        case "text"?: return nil
        case "json_object"?: return .object([("type", .s("json_object"))])
        case "json_schema"?:
            guard let schema = f["schema"], schema.objectValue != nil else {
                throw APIError.badRequest("text.format.schema must be a JSON Schema object", param: "text.format.schema")
            }
            return .object([("type", .s("json_schema")), ("json_schema", .object([("name", f["name"] ?? .s("response")), ("schema", schema)]))])
        default: throw APIError.badRequest("text.format.type must be 'text', 'json_object' or 'json_schema'", param: "text.format.type")
        }
    }

    /// A Responses tool as a chat tool (nil: a built-in tool the recipe drops).
    static func responsesTool(_ t: JSONValue, path: String) throws -> JSONValue? {
        guard let type = t["type"]?.stringValue else { throw APIError.badRequest("a tool needs a 'type'", param: "\(path).type") }
        if droppedResponsesTools.contains(type) { return nil }
        guard type == "function" else {
            throw APIError.badRequest("tool type '\(type)' is not supported (function tools only)", param: "\(path).type")
        }
        guard let name = t["name"]?.stringValue, !name.isEmpty else { throw APIError.badRequest("a function tool needs a 'name'", param: "\(path).name") }
        var fn: [(String, JSONValue)] = [("name", .s(name))]
        for key in ["description", "parameters", "strict"] { if let v = t[key], !v.isNull { fn.append((key, v)) } }
        return .object([("type", .s("function")), ("function", .object(fn))])
    }

    static func responsesToolChoice(_ tc: JSONValue) throws -> JSONValue {
        if let s = tc.stringValue {
            guard ["auto", "none", "required"].contains(s) else {
                throw APIError.badRequest("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": …}", param: "tool_choice")
            }
            return tc
        }
        guard tc["type"]?.stringValue == "function", let name = tc["name"]?.stringValue else {
            throw APIError.badRequest("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": …}", param: "tool_choice")
        }
        return .object([("type", .s("function")), ("function", .object([("name", .s(name))]))])
    }
}

/// Builds the chat messages of a Responses input, one item at a time.
private struct ResponsesTurns {
    var messages: [JSONValue] = []
    /// The assistant turn being gathered.
    var texts: [String] = []
    var reasoning: [String]?
    var calls: [JSONValue] = []

    mutating func flush() {
        guard reasoning != nil || !texts.isEmpty || !calls.isEmpty else { return }
        var a: [(String, JSONValue)] = [("role", .s("assistant")), ("content", .s(texts.joined(separator: "\n\n")))]
        if let reasoning, !reasoning.isEmpty { a.append(("reasoning_content", .s(reasoning.joined(separator: "\n")))) }
        if !calls.isEmpty { a.append(("tool_calls", .array(calls))) }
        messages.append(.object(a))
        (texts, reasoning, calls) = ([], nil, [])
    }

    mutating func add(_ item: JSONValue, path: String) throws {
        guard item.objectValue != nil else { throw APIError.badRequest("an input item must be an object", param: path) }
        let type = item["type"]?.stringValue ?? (item["role"] != nil ? "message" : "")
        switch type {
        case "message": try message(item, path: path)
        case "reasoning":
            // Only reasoning text counts: an item with none (a summary, encrypted content) adds nothing.
            var list: [String] = []
            for (j, part) in (item["content"]?.arrayValue ?? []).enumerated() {
                guard let t = part["text"]?.stringValue else { throw APIError.badRequest("a reasoning part needs 'text'", param: "\(path).content[\(j)].text") }
                list.append(t)
            }
            guard !list.isEmpty else { return }
            if !texts.isEmpty || !calls.isEmpty { flush() }
            reasoning = (reasoning ?? []) + list
        case "function_call":
            guard let id = item["call_id"]?.stringValue, let name = item["name"]?.stringValue else {
                throw APIError.badRequest("a function_call needs 'call_id' and 'name'", param: path)
            }
            guard let args = item["arguments"]?.stringValue else { throw APIError.badRequest("'arguments' must be a JSON string", param: "\(path).arguments") }
            calls.append(.object([("id", .s(id)), ("type", .s("function")), ("function", .object([("name", .s(name)), ("arguments", .s(args))]))]))
        case "function_call_output":
            flush()
            guard let id = item["call_id"]?.stringValue else { throw APIError.badRequest("a function_call_output needs 'call_id'", param: "\(path).call_id") }
            let output = try Self.text(item["output"], path: "\(path).output")
            messages.append(.object([("role", .s("tool")), ("tool_call_id", .s(id)), ("content", .s(output))]))
        default:
            throw APIError.badRequest("input item type '\(type)' is not supported (message, reasoning, function_call, function_call_output)", param: "\(path).type")
        }
    }

    mutating func message(_ item: JSONValue, path: String) throws {
        let role = item["role"]?.stringValue ?? ""
        let content = try Self.text(item["content"], path: "\(path).content")
        switch role {
        case "assistant":
            if !calls.isEmpty { flush() }
            texts.append(content)
        case "user", "developer", "system":
            flush()
            messages.append(.object([("role", .s(role == "system" ? "system" : "user")), ("content", .s(content))]))
        default:
            throw APIError.badRequest("role must be 'user', 'assistant', 'system' or 'developer'", param: "\(path).role")
        }
    }

    /// Message content or a function output: a string, or text parts joined by blank lines.
    static func text(_ v: JSONValue?, path: String) throws -> String {
        guard let v, !v.isNull else { throw APIError.badRequest("required field is missing", param: path) }
        if let s = v.stringValue { return s }
        guard let parts = v.arrayValue else { throw APIError.badRequest("must be a string or an array of content parts", param: path) }
        return try parts.enumerated().map { j, p in
            switch p["type"]?.stringValue {
            case "input_text"?, "output_text"?:
                guard let t = p["text"]?.stringValue else { throw APIError.badRequest("a text part needs 'text'", param: "\(path)[\(j)].text") }
                return t
            case "input_image"?: return "[Unsupported Image]"
            case "input_file"?: return "[Unsupported Document]"
            default:
                throw APIError.badRequest(
                    "content part type '\(p["type"]?.stringValue ?? "?")' is not supported (input_text, output_text, input_image, input_file)",
                    param: "\(path)[\(j)].type")
            }
        }.joined(separator: "\n\n")
    }
}

extension DSV4Server {
    /// The chat messages of `instructions`, `history` and `input`.
    static func responsesMessages(_ body: JSONValue, history: [JSONValue]) throws -> [JSONValue] {
        var turns = ResponsesTurns()
        if let i = body["instructions"], !i.isNull {
            guard let s = i.stringValue else { throw APIError.badRequest("'instructions' must be a string", param: "instructions") }
            turns.messages.append(.object([("role", .s("system")), ("content", .s(s))]))
        }
        for (k, item) in history.enumerated() { try turns.add(item, path: "previous_response_id(item \(k))") }
        guard let input = body["input"], !input.isNull else {
            guard !turns.messages.isEmpty || !history.isEmpty else {
                throw APIError.badRequest("either 'input' or 'instructions' must be given", param: "input")
            }
            turns.flush()
            return turns.messages
        }
        if let s = input.stringValue {
            turns.flush()
            turns.messages.append(.object([("role", .s("user")), ("content", .s(s))]))
        } else if let items = input.arrayValue {
            guard !items.isEmpty || !history.isEmpty else { throw APIError.badRequest("'input' must not be an empty array", param: "input") }
            for (k, item) in items.enumerated() { try turns.add(item, path: "input[\(k)]") }
            turns.flush()
        } else {
            throw APIError.badRequest("'input' must be a string or an array of items", param: "input")
        }
        return turns.messages
    }
}
