// DSV4Server+Chat.swift: POST /v1/chat/completions: render the V4 prompt, generate, parse
// reasoning / content / tool calls, answer as one JSON or as SSE chunks.
import Engine
import Foundation
import Hummingbird
import NIOCore
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
}

extension DSV4Server {
    struct ChatPlan {
        let conversation: ChatConversation
        let prompt: [Int]
        let parameters: SamplingParameters
        let stream: Bool
        let includeUsage: Bool
        let constraint: ConstraintFactory?
        /// Whether tool-call blocks in the output become `tool_calls` (tools given, and
        /// tool_choice is not "none").
        let parseToolCalls: Bool
    }

    func planChat(_ body: JSONValue) throws -> ChatPlan {
        try checkModel(body)
        let r = FieldReader(body: body)
        try r.checkMessageContent()
        let conv = try ChatConversation(request: body)
        var constraint: ConstraintFactory?
        if let f = body["response_format"], !f.isNull {
            switch f["type"]?.stringValue {
            case "text": break
            case "json_object": constraint = .json(tokenizer, thinking: conv.thinking)
            case "json_schema":
                guard let schema = f["json_schema"]?["schema"] else {
                    throw APIError.badRequest("response_format.json_schema.schema is required", param: "response_format.json_schema.schema")
                }
                let node = try SchemaNode.parse(schema)
                guard node.types == nil || node.types!.contains("object") || node.literals != nil else {
                    throw APIError.badRequest("the schema's top level must be an object", param: "response_format.json_schema.schema")
                }
                constraint = .json(tokenizer, thinking: conv.thinking, schema: node)
            default: throw APIError.badRequest("response_format.type must be 'text', 'json_object' or 'json_schema'", param: "response_format.type")
            }
        }
        var parseToolCalls = !conv.tools.isEmpty
        if let tc = body["tool_choice"], !tc.isNull {
            switch tc.stringValue {
            case "auto"?: break
            case "none"?:
                // OpenAI/DeepSeek: the model must answer with a message. ChatConversation
                // leaves the tools out of the prompt, but a model may still write a tool-call
                // block, so its opening tag can never be completed.
                parseToolCalls = false
                if constraint == nil, body["tools"]?.arrayValue?.isEmpty == false {
                    constraint = .noToolCalls(tokenizer, thinking: conv.thinking)
                }
            case "required"?:
                guard !conv.tools.isEmpty else { throw APIError.badRequest("tool_choice 'required' needs tools", param: "tool_choice") }
                constraint = .toolCall(tokenizer, thinking: conv.thinking, function: nil)
            case nil:
                guard let name = tc["function"]?["name"]?.stringValue else {
                    throw APIError.badRequest("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": {\"name\": …}}", param: "tool_choice")
                }
                guard conv.tools.contains(where: { $0["name"]?.stringValue == name }) else {
                    throw APIError.badRequest("tool_choice names '\(name)', which is not among the tools", param: "tool_choice")
                }
                constraint = .toolCall(tokenizer, thinking: conv.thinking, function: name)
            default: throw APIError.badRequest("tool_choice must be 'auto', 'none', 'required' or a function", param: "tool_choice")
            }
        }
        let prompt = tokenizer.encode(PromptRenderer.render(conv))
        var p = try r.sampling(defaultMaxTokens: try defaultMaxTokens(promptTokens: prompt.count), logprobsAsCount: false)
        try checkContext(promptTokens: prompt.count, maxTokens: p.maxTokens)
        if p.temperature.isNaN { p.temperature = 1 }
        let stream = try r.bool("stream") ?? false
        let includeUsage = try r.includeUsage()
        return ChatPlan(
            conversation: conv, prompt: prompt, parameters: p, stream: stream, includeUsage: includeUsage, constraint: constraint,
            parseToolCalls: parseToolCalls)
    }

    func chatCompletions(_ body: JSONValue, _ call: Call) async throws -> Response {
        let plan = try planChat(body)
        let record = call.record
        let run = try GenerationRun(
            engine: engine, tokenizer: tokenizer, prompt: plan.prompt, parameters: plan.parameters, hiddenTokens: hiddenTokens,
            constraint: plan.constraint, record: record)
        if plan.stream { record.update { $0.stream = true } }
        call.onClientGone(self) { run.cancel() }
        let id = Self.requestID("chatcmpl-")
        let tools = plan.parseToolCalls
        let thinking = plan.conversation.thinking
        let n = plan.parameters.n
        let wantLogprobs = plan.parameters.logprobs
        let start = ContinuousClock.now

        @Sendable func tokenLogprob(_ s: SampledToken) -> JSONValue {
            func entry(_ token: Int, _ lp: Float) -> [(String, JSONValue)] {
                let bytes = tokenizer.bytes(of: token)
                return [("token", .s(String(decoding: bytes, as: UTF8.self))), ("logprob", .f(lp)), ("bytes", .array(bytes.map { .n(Int($0)) }))]
            }
            return .object(entry(s.token, s.logprob) + [("top_logprobs", .array(s.top.map { .object(entry($0.token, $0.logprob)) }))])
        }

        /// One delta as chat.completion.chunk JSON.
        @Sendable func chunk(
            _ choice: Int, _ delta: [(String, JSONValue)], finish: String? = nil, logprobs: JSONValue = .null, extra: [(String, JSONValue)] = []
        ) -> String {
            var fields: [(String, JSONValue)] = [
                ("id", .s(id)), ("object", .s("chat.completion.chunk")), ("created", .n(Int(Date().timeIntervalSince1970))),
                ("model", .s(modelName)),
                ("choices", .array([.object([
                    ("index", .n(choice)), ("delta", .object(delta)), ("logprobs", logprobs), ("finish_reason", finish.map { .s($0) } ?? .null),
                ])])),
            ]
            fields += extra
            let v = JSONValue.object(fields)
            return "data: " + v.promptJSON() + "\n\n"
        }

        @Sendable func deltaJSON(_ d: OutputDelta, _ acc: inout ChoiceAccumulator) -> [(String, JSONValue)]? {
            switch d {
            case .reasoning(let s): return s.isEmpty ? nil : [("reasoning_content", .s(s))]
            case .content(let s): return s.isEmpty ? nil : [("content", .s(s))]
            case .toolCall(let i, let name):
                let tid = Self.requestID("call_")
                acc.toolIDs.append(tid)
                return [("tool_calls", .array([.object([
                    ("index", .n(i)), ("id", .s(tid)), ("type", .s("function")),
                    ("function", .object([("name", .s(name)), ("arguments", .s(""))])),
                ])]))]
            case .toolArguments(let i, let s):
                return [("tool_calls", .array([.object([("index", .n(i)), ("function", .object([("arguments", .s(s))]))])]))]
            }
        }

        @Sendable func finishReason(_ r: FinishReason, _ acc: ChoiceAccumulator) -> String {
            switch r {
            case .length: "length"
            case .stop: acc.parser.sawToolCalls ? "tool_calls" : "stop"
            case .cancelled: "stop"
            case .error: "error"
            }
        }

        @Sendable func usage(_ prompt: Int, _ cached: Int, _ completion: Int) -> JSONValue {
            .object([
                ("prompt_tokens", .n(prompt)), ("completion_tokens", .n(completion)), ("total_tokens", .n(prompt + completion)),
                ("prompt_tokens_details", .object([("cached_tokens", .n(cached))])),
            ])
        }

        if !plan.stream {
            var accs = (0..<n).map { _ in ChoiceAccumulator(thinking: thinking, tools: tools) }
            var promptTokens = plan.prompt.count, cached = 0, completion = 0
            let updates = run.updates()
            try await withTaskCancellationHandler {
                for await u in updates {
                    switch u {
                    case .started(let p, let c): promptTokens = p; cached = c
                    case .text(let k, let text, let token):
                        for d in accs[k].parser.push(text) { accs[k].output.apply(d); if case .toolCall = d { accs[k].toolIDs.append(Self.requestID("call_")) } }
                        if wantLogprobs, let token { accs[k].logprobs.append(tokenLogprob(token)) }
                    case .finished(let k, let reason, let tokens):
                        for d in accs[k].parser.finish() { accs[k].output.apply(d); if case .toolCall = d { accs[k].toolIDs.append(Self.requestID("call_")) } }
                        accs[k].finish = finishReason(reason, accs[k])
                        record.finished(accs[k].finish!)
                        completion += tokens
                    case .keepAlive: break
                    case .failed(let e): throw Self.map(e)
                    }
                }
            } onCancel: { run.cancel() }
            metrics.tokens(prompt: promptTokens, completion: completion, cached: cached)
            metrics.observe("chat_completion", seconds: (ContinuousClock.now - start).seconds)
            let choices: [JSONValue] = accs.enumerated().map { k, a in
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
            return json(.object([
                ("id", .s(id)), ("object", .s("chat.completion")), ("created", .n(created)), ("model", .s(modelName)),
                ("choices", .array(choices)), ("usage", usage(promptTokens, cached, completion)),
                ("system_fingerprint", .s("dsv4")), ("timings", record.timingsJSON),
            ]))
        }

        // Streaming: SSE chunks as the parser releases deltas.
        let keepAlive = Duration.seconds(options.keepAliveSeconds)
        let includeUsage = plan.includeUsage
        let promptCount = plan.prompt.count
        let body = ResponseBody { [self] writer in
            defer { finish(record) }
            var accs = (0..<n).map { _ in ChoiceAccumulator(thinking: thinking, tools: tools) }
            var promptTokens = promptCount, cached = 0, completion = 0
            var opened = Set<Int>()
            var finishedCount = 0
            let updates = run.updates(keepAliveEvery: keepAlive)
            do {
                for await u in updates {
                    var out = ""
                    switch u {
                    case .started(let p, let c): promptTokens = p; cached = c
                    case .keepAlive: out = ": keep-alive\n\n"
                    case .text(let k, let text, let token):
                        if !opened.contains(k) {
                            opened.insert(k)
                            out += chunk(k, [("role", .s("assistant")), ("content", .s(""))] + (thinking ? [("reasoning_content", .s(""))] : []))
                        }
                        var first = true
                        for d in accs[k].parser.push(text) {
                            accs[k].output.apply(d)
                            if let delta = deltaJSON(d, &accs[k]) {
                                let lp: JSONValue = (wantLogprobs && first && token != nil) ? .object([("content", .array([tokenLogprob(token!)]))]) : .null
                                first = false
                                out += chunk(k, delta, logprobs: lp)
                            }
                        }
                        if first, wantLogprobs, let token { out += chunk(k, [], logprobs: .object([("content", .array([tokenLogprob(token)]))])) }
                    case .finished(let k, let reason, let tokens):
                        for d in accs[k].parser.finish() {
                            accs[k].output.apply(d)
                            if let delta = deltaJSON(d, &accs[k]) { out += chunk(k, delta) }
                        }
                        completion += tokens
                        let f = finishReason(reason, accs[k])
                        record.finished(f)
                        finishedCount += 1
                        // The last choice's finish chunk carries the request's timings.
                        out += chunk(k, [], finish: f, extra: finishedCount == n ? [("timings", record.timingsJSON)] : [])
                    case .failed(let e):
                        out = "data: " + Self.map(e).body + "\n\n"
                    }
                    if !out.isEmpty { try await writer.write(ByteBuffer(string: out)) }
                }
                if includeUsage {
                    let v: JSONValue = .object([
                        ("id", .s(id)), ("object", .s("chat.completion.chunk")), ("created", .n(Int(Date().timeIntervalSince1970))),
                        ("model", .s(modelName)), ("choices", .array([])), ("usage", usage(promptTokens, cached, completion)),
                        ("timings", record.timingsJSON),
                    ])
                    try await writer.write(ByteBuffer(string: "data: " + v.promptJSON() + "\n\n"))
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
                metrics.tokens(prompt: promptTokens, completion: completion, cached: cached)
                metrics.observe("chat_completion", seconds: (ContinuousClock.now - start).seconds)
            } catch {
                // The client went away: stop generating and free the cache now.
                run.cancel()
                if record.clientGone() { metrics.clientCancelled() }
                throw error
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}
