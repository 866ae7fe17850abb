// ChatRequest.swift: the parts of an OpenAI Chat Completions request that decide the V4
// prompt, read from JSON with located errors (`messages[2].content`, ...).

/// A request field that cannot be used, with its JSON path.
public struct ChatRequestError: Error, Equatable, CustomStringConvertible {
    /// JSON path of the field, e.g. `messages[1].tool_calls[0].function.name`.
    public let param: String
    public let message: String
    public var description: String { "\(param): \(message)" }
}

/// One tool call in assistant history.
public struct ChatToolCall: Equatable, Sendable {
    public var id: String
    public var name: String
    /// The arguments as the client sent them (a JSON object text, usually).
    public var arguments: String

    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// A message after validation.
public struct ChatMessage: Equatable, Sendable {
    public enum Role: String, Sendable { case system, user, assistant, tool, latestReminder = "latest_reminder" }
    public var role: Role
    /// Text content (multi-part content joined with blank lines; non-text parts as
    /// `[Unsupported Image]`-style placeholders, as DeepSeek's renderer does).
    public var content: String
    public var reasoning: String?
    public var toolCalls: [ChatToolCall] = []
    public var toolCallID: String?
    /// Assistant prefix completion: the model continues this message.
    public var prefix = false

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }
}

/// How hard the model thinks (DeepSeek API values; others map as DeepSeek's renderer does).
public enum ReasoningEffort: String, Sendable {
    case none, minimal, low, medium, high, xhigh, ultra, max
}

/// Everything the renderer needs from a request.
public struct ChatConversation: Equatable, Sendable {
    public var messages: [ChatMessage]
    /// OpenAI `function` objects of the request's tools.
    public var tools: [JSONValue]
    public var thinking: Bool
    /// nil: DeepSeek's default (high).
    public var effort: String?
    /// Structured output the prompt announces (`response_format`).
    public var responseFormat: ResponseFormat?

    public static func == (a: ChatConversation, b: ChatConversation) -> Bool {
        a.messages == b.messages && a.tools == b.tools && a.thinking == b.thinking && a.effort == b.effort
            && a.responseFormat == b.responseFormat
    }
}

extension ChatConversation {
    /// Reads a Chat Completions request body.
    public init(request body: JSONValue) throws {
        guard case .object = body else { throw ChatRequestError(param: "(body)", message: "the request must be a JSON object") }
        guard let msgs = body["messages"] else { throw ChatRequestError(param: "messages", message: "required field is missing") }
        guard let list = msgs.arrayValue else { throw ChatRequestError(param: "messages", message: "must be an array, got \(msgs.typeName)") }
        guard !list.isEmpty else { throw ChatRequestError(param: "messages", message: "must not be empty") }
        var messages: [ChatMessage] = []
        for (i, m) in list.enumerated() { messages.append(try Self.message(m, path: "messages[\(i)]")) }

        var tools: [JSONValue] = []
        if let t = body["tools"], !t.isNull {
            guard let arr = t.arrayValue else { throw ChatRequestError(param: "tools", message: "must be an array") }
            for (i, tool) in arr.enumerated() {
                guard tool["type"]?.stringValue ?? "function" == "function" else {
                    throw ChatRequestError(param: "tools[\(i)].type", message: "only \"function\" tools are supported")
                }
                guard let fn = tool["function"], case .object = fn else {
                    throw ChatRequestError(param: "tools[\(i)].function", message: "required object is missing")
                }
                guard let name = fn["name"]?.stringValue, !name.isEmpty else {
                    throw ChatRequestError(param: "tools[\(i)].function.name", message: "required string is missing")
                }
                _ = name
                // With tool_choice "none" the tools leave the prompt unchecked (as in the recipe).
                let off = body["tool_choice"]?.stringValue == "none"
                tools.append(off ? fn : try StrictSchema.function(fn, path: "tools[\(i)].function"))
            }
        }
        if let tc = body["tool_choice"], tc.stringValue == "none" { tools = [] }

        var thinking = true
        var thinkingGiven = false
        if let t = body["thinking"], !t.isNull {
            thinkingGiven = true
            guard let type = t["type"]?.stringValue, ["enabled", "disabled", "adaptive"].contains(type) else {
                throw ChatRequestError(param: "thinking.type", message: "must be \"enabled\", \"disabled\" or \"adaptive\"")
            }
            thinking = type != "disabled"
        }
        var effort: String?
        if let e = body["reasoning_effort"], !e.isNull {
            guard let s = e.stringValue else { throw ChatRequestError(param: "reasoning_effort", message: "must be a string") }
            guard ReasoningEffort(rawValue: s) != nil else {
                throw ChatRequestError(param: "reasoning_effort", message: "must be one of none, minimal, low, medium, high, xhigh, ultra, max; got \"\(s)\"")
            }
            // "none" turns thinking off unless `thinking` says otherwise (then it means the default).
            if s == "none" {
                if !thinkingGiven { thinking = false }
            } else {
                effort = s
            }
        }
        self.init(messages: messages, tools: tools, thinking: thinking, effort: effort, responseFormat: ResponseFormat(body["response_format"]))
        try validateToolFlow()
    }

    static func text(_ v: JSONValue?, path: String) throws -> String {
        guard let v, !v.isNull else { return "" }
        if let s = v.stringValue { return s }
        guard let parts = v.arrayValue else { throw ChatRequestError(param: path, message: "must be a string or an array of content parts") }
        var out: [String] = []
        for (i, p) in parts.enumerated() {
            if let s = p.stringValue { out.append(s); continue }
            guard let type = p["type"]?.stringValue else { throw ChatRequestError(param: "\(path)[\(i)].type", message: "required string is missing") }
            switch type {
            case "text":
                guard let t = p["text"]?.stringValue else { throw ChatRequestError(param: "\(path)[\(i)].text", message: "required string is missing") }
                out.append(t)
            case "image_url", "image": out.append("[Unsupported Image]")
            default: out.append("[Unsupported \(type)]")
            }
        }
        return out.joined(separator: "\n\n")
    }

    static func message(_ m: JSONValue, path: String) throws -> ChatMessage {
        guard case .object = m else { throw ChatRequestError(param: path, message: "must be an object") }
        guard let roleName = m["role"]?.stringValue else { throw ChatRequestError(param: "\(path).role", message: "required string is missing") }
        let role: ChatMessage.Role
        switch roleName {
        case "system", "developer": role = .system
        case "user": role = .user
        case "assistant": role = .assistant
        case "tool": role = .tool
        case "latest_reminder": role = .latestReminder
        default:
            throw ChatRequestError(param: "\(path).role", message: "unknown role \"\(roleName)\" (expected system, developer, user, assistant, tool)")
        }
        var msg = ChatMessage(role: role, content: try text(m["content"], path: "\(path).content"))
        if role == .assistant {
            // `reasoning` (vLLM's name) is accepted but, as in DeepSeek's renderer, not rendered.
            for key in ["reasoning_content", "reasoning"] {
                if let r = m[key], !r.isNull {
                    guard let s = r.stringValue else { throw ChatRequestError(param: "\(path).\(key)", message: "must be a string") }
                    if key == "reasoning_content" { msg.reasoning = s }
                }
            }
            if let calls = m["tool_calls"], !calls.isNull {
                guard let arr = calls.arrayValue else { throw ChatRequestError(param: "\(path).tool_calls", message: "must be an array") }
                for (i, c) in arr.enumerated() {
                    let p = "\(path).tool_calls[\(i)]"
                    guard let fn = c["function"] else { throw ChatRequestError(param: "\(p).function", message: "required object is missing") }
                    guard let name = fn["name"]?.stringValue else { throw ChatRequestError(param: "\(p).function.name", message: "required string is missing") }
                    let args: String
                    switch fn["arguments"] {
                    case .string(let s)?: args = s
                    case .object?, .array?: args = fn["arguments"]!.promptJSON()
                    case nil, .null?: args = "{}"
                    default: throw ChatRequestError(param: "\(p).function.arguments", message: "must be a JSON string")
                    }
                    msg.toolCalls.append(ChatToolCall(id: c["id"]?.stringValue ?? "", name: name, arguments: args))
                }
            }
            if m["content"] == nil || m["content"]!.isNull, msg.toolCalls.isEmpty {
                throw ChatRequestError(param: "\(path).content", message: "an assistant message needs content or tool_calls")
            }
            msg.prefix = m["prefix"]?.boolValue ?? false
        }
        if role == .tool {
            guard let id = m["tool_call_id"]?.stringValue else { throw ChatRequestError(param: "\(path).tool_call_id", message: "required string is missing") }
            msg.toolCallID = id
        }
        return msg
    }

    /// Tool results must answer a preceding assistant's tool calls; a prefix message must be last.
    func validateToolFlow() throws {
        var open: Set<String> = []
        var sawCalls = false
        for (i, m) in messages.enumerated() {
            switch m.role {
            case .assistant:
                // Every call needs its result in the tool messages right after it.
                var answered = Set<String>()
                var r = i + 1
                while r < messages.count, messages[r].role == .tool {
                    answered.insert(messages[r].toolCallID ?? "")
                    r += 1
                }
                if !m.prefix, let missing = m.toolCalls.first(where: { !answered.contains($0.id) }) {
                    throw ChatRequestError(param: "messages[\(i)].tool_calls", message: "tool call \"\(missing.id)\" has no tool message answering it")
                }
                open = Set(m.toolCalls.map(\.id))
                sawCalls = !m.toolCalls.isEmpty
                if m.prefix && i != messages.count - 1 {
                    throw ChatRequestError(param: "messages[\(i)].prefix", message: "only the last message can be a prefix")
                }
            case .tool:
                guard sawCalls else {
                    throw ChatRequestError(param: "messages[\(i)]", message: "a tool message must answer a preceding assistant message with tool_calls")
                }
                guard open.contains(m.toolCallID ?? "") else {
                    throw ChatRequestError(param: "messages[\(i)].tool_call_id", message: "\"\(m.toolCallID ?? "")\" does not match a tool call of the preceding assistant message")
                }
            case .user:
                sawCalls = false
            default: break
            }
        }
    }
}
