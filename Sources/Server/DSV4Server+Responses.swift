// DSV4Server+Responses.swift: the OpenAI Responses API (what Codex and the Agents SDK speak):
// POST /v1/responses maps the request (and the stored history of `previous_response_id`)
// onto the equivalent Chat Completions body, plans it like chat (`planChat`: same prompt,
// sampling and constraints) and generates through the driver with `ResponsesEncoder`;
// GET / DELETE /v1/responses/{id} read and remove stored responses;
// POST /v1/responses/input_tokens counts a request's prompt tokens.
import Engine
import Foundation
import Hummingbird
import OpenAIAPI
import Tokenization

extension DSV4Server {
    /// Fields the Responses API defines that this server accepts (anything else is a 400, so
    /// a client learns what is ignored), with the JSON kinds each takes besides null.
    static let responsesFields: [String: Set<String>] = [
        "model": ["string"], "input": ["string", "array"], "instructions": ["string"], "tools": ["array"],
        "tool_choice": ["string", "object"], "parallel_tool_calls": ["bool"], "reasoning": ["object"], "text": ["object"],
        "max_output_tokens": ["number"], "temperature": ["number"], "top_p": ["number"], "top_k": ["number"], "min_p": ["number"],
        "seed": ["number"], "presence_penalty": ["number"], "frequency_penalty": ["number"], "stop": ["string", "array"],
        "stop_token_ids": ["array"], "metadata": ["object"], "user": ["string"], "store": ["bool"], "stream": ["bool"],
        "previous_response_id": ["string"], "truncation": ["string"], "include": ["array"], "service_tier": ["string"],
        "prompt_cache_key": ["string"], "safety_identifier": ["string"], "top_logprobs": ["number"], "max_tool_calls": ["number"],
        "background": ["bool"], "stream_options": ["object"], "return_progress": ["bool"], "client_metadata": ["object"],
        "prompt_cache_retention": ["string"],
    ]

    static func jsonKind(_ v: JSONValue) -> String {
        switch v {
        case .null: "null"
        case .bool: "bool"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// Every top-level field is known and of its kind; `metadata` holds at most 16 string values.
    static func checkResponsesFields(_ body: JSONValue) throws {
        for (k, v) in body.objectValue ?? [] where !v.isNull {
            guard let kinds = responsesFields[k] else { throw APIError.badRequest("unknown parameter '\(k)'", param: k, code: "unknown_parameter") }
            guard kinds.contains(jsonKind(v)) else {
                throw APIError.badRequest("'\(k)' must be \(kinds.sorted().joined(separator: " or ")), got \(jsonKind(v))", param: k, code: "invalid_type")
            }
        }
        if let m = body["metadata"]?.objectValue {
            guard m.count <= 16, m.allSatisfy({ $0.1.stringValue != nil }) else {
                throw APIError.badRequest("'metadata' holds at most 16 string values", param: "metadata")
            }
        }
        if body["background"]?.boolValue == true { throw APIError.badRequest("background responses are not supported", param: "background") }
        if let t = body["truncation"]?.stringValue, t != "disabled", t != "auto" {
            throw APIError.badRequest("'truncation' must be 'disabled' or 'auto'", param: "truncation")
        }
    }

    /// The history a continuation starts from (404 for an unknown or evicted id).
    func previousHistory(_ body: JSONValue) throws -> [JSONValue] {
        guard let id = body["previous_response_id"]?.stringValue else { return [] }
        guard let e = responseStore.get(id) else { throw Self.responseNotFound(id, param: "previous_response_id") }
        return e.history
    }

    static func responseNotFound(_ id: String, param: String? = nil) -> APIError {
        APIError(.notFound, "No response found with id '\(id)'.", param: param, code: "not_found")
    }

    /// The request's input as items (a string input is one user message).
    static func inputItems(_ body: JSONValue) -> [JSONValue] {
        if let s = body["input"]?.stringValue { return [.object([("role", .s("user")), ("content", .s(s))])] }
        return body["input"]?.arrayValue ?? []
    }

    /// The request settings a response reports.
    func responsesEcho(_ body: JSONValue) -> [(String, JSONValue)] {
        func given(_ k: String, _ d: JSONValue = .null) -> JSONValue { body[k].flatMap { $0.isNull ? nil : $0 } ?? d }
        let effort = body["reasoning"]?["effort"].flatMap { $0.isNull ? nil : $0 } ?? .null
        return [
            ("model", .s(modelName)), ("instructions", given("instructions")), ("max_output_tokens", given("max_output_tokens")),
            ("parallel_tool_calls", given("parallel_tool_calls", .bool(true))), ("previous_response_id", given("previous_response_id")),
            ("reasoning", .object([("effort", effort), ("summary", .null)])), ("store", given("store", .bool(true))),
            ("temperature", given("temperature", .n(1))), ("top_p", given("top_p", .n(1))),
            ("text", .object([("format", given("text")["format"] ?? .object([("type", .s("text"))]))])),
            ("tool_choice", given("tool_choice", .s("auto"))), ("tools", given("tools", .array([]))), ("truncation", given("truncation", .s("disabled"))),
            ("user", given("user")), ("metadata", given("metadata", .object([]))),
        ]
    }

    /// Reads a Responses request into its chat plan (and the history it continues).
    func planResponses(_ body: JSONValue) throws -> (plan: ChatPlan, history: [JSONValue]) {
        try checkModel(body)
        try Self.checkResponsesFields(body)
        let history = try previousHistory(body)
        let plan = try planChat(try Self.chatBody(fromResponses: body, history: history))
        return (plan, history)
    }

    func responses(_ body: JSONValue, _ call: Call) async throws -> Response {
        let (plan, history) = try planResponses(body)
        let r = FieldReader(body: body)
        let id = Self.requestID("resp_")
        var encoder = ResponsesEncoder(
            id: id, created: Int(Date().timeIntervalSince1970), echo: responsesEcho(body), thinking: plan.conversation.thinking,
            parseToolCalls: plan.parseToolCalls, parallelToolCalls: try r.bool("parallel_tool_calls") ?? true)
        encoder.conversation = plan.conversation
        if try r.bool("store") ?? true {
            let store = responseStore, input = history + Self.inputItems(body)
            encoder.onComplete = { response, output in store.put(id: id, response: response, history: input + output) }
        }
        let job = GenerationJob(
            prompt: plan.prompt, parameters: plan.parameters, constraint: plan.job.constraint, stream: try r.bool("stream") ?? false,
            returnProgress: try r.bool("return_progress") ?? false)
        return try await drive(job, encoder, call: call)
    }

    /// POST /v1/responses/input_tokens: the prompt's token count, without generating.
    func responsesInputTokens(_ body: JSONValue) throws -> Response {
        let (plan, _) = try planResponses(body)
        return json(.object([("object", .s("response.input_tokens")), ("input_tokens", .n(plan.prompt.count))]))
    }

    /// GET /v1/responses/{id}.
    func storedResponse(_ id: String) throws -> Response {
        guard let e = responseStore.get(id) else { throw Self.responseNotFound(id) }
        return json(e.response)
    }

    /// DELETE /v1/responses/{id}.
    func deleteResponse(_ id: String) throws -> Response {
        guard responseStore.delete(id) else { throw Self.responseNotFound(id) }
        return json(.object([("id", .s(id)), ("object", .s("response.deleted")), ("deleted", .bool(true))]))
    }

    /// POST /v1/messages/count_tokens (Anthropic): the prompt tokens `messages.create` would
    /// report for the same request.
    func messagesCountTokens(_ body: JSONValue) throws -> Response {
        try checkModel(body)
        var b = body
        if b["max_tokens"] == nil, case .object(var members) = b {
            members.append(("max_tokens", .n(1)))
            b = .object(members)
        }
        let plan = try planChat(try Self.chatBody(fromMessages: b))
        return json(.object([("input_tokens", .n(plan.prompt.count))]))
    }
}
