// DSV4Server+Chat.swift: POST /v1/chat/completions: read the request into the V4 prompt,
// sampling and constraint (`planChat`, shared with /v1/messages), and generate through the
// driver with `ChatEncoder`.
import Engine
import Foundation
import Hummingbird
import NIOCore
import OpenAIAPI
import Tokenization

extension DSV4Server {
    struct ChatPlan {
        let conversation: ChatConversation
        let job: GenerationJob
        let includeUsage: Bool
        /// Whether tool-call blocks in the output become `tool_calls` (tools given, and
        /// tool_choice is not "none").
        let parseToolCalls: Bool
        var prompt: [Int] { job.prompt }
        var parameters: SamplingParameters { job.parameters }
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
            conversation: conv, job: GenerationJob(prompt: prompt, parameters: p, constraint: constraint, stream: stream),
            includeUsage: includeUsage, parseToolCalls: parseToolCalls)
    }

    func chatCompletions(_ body: JSONValue, _ call: Call) async throws -> Response {
        let plan = try planChat(body)
        let base = ChatEncoder(
            id: Self.requestID("chatcmpl-"), model: modelName, created: Int(Date().timeIntervalSince1970), logprobs: LogprobText(tokenizer: tokenizer),
            thinking: plan.conversation.thinking, parseToolCalls: plan.parseToolCalls, n: plan.parameters.n,
            wantLogprobs: plan.parameters.logprobs, includeUsage: plan.includeUsage)
        var encoder = base
        encoder.conversation = plan.conversation
        var job = plan.job
        job.returnProgress = try FieldReader(body: body).bool("return_progress") ?? false
        return try await drive(job, encoder, call: call)
    }
}
