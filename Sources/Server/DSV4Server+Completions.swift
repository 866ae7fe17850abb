// DSV4Server+Completions.swift: POST /v1/completions: a raw prompt (text or token ids),
// with vLLM's `return_token_ids` extension so clients can check exact tokens, generated
// through the driver with `CompletionEncoder`.
import Engine
import Foundation
import Hummingbird
import OpenAIAPI
import Tokenization

extension DSV4Server {
    func completions(_ body: JSONValue, _ call: Call) async throws -> Response {
        try checkModel(body)
        let r = FieldReader(body: body)
        if try r.bool("echo") == true { throw APIError.badRequest("'echo' is not supported", param: "echo") }
        let prompt = try completionPrompt(body)
        let params = try r.sampling(defaultMaxTokens: min(16, max(1, options.maxModelLen - prompt.count)), logprobsAsCount: true)
        try checkContext(promptTokens: prompt.count, maxTokens: params.maxTokens)
        let job = GenerationJob(
            prompt: prompt, parameters: params, constraint: nil, stream: try r.bool("stream") ?? false,
            returnProgress: try r.bool("return_progress") ?? false)
        let encoder = CompletionEncoder(
            id: Self.requestID("cmpl-"), model: modelName, created: Int(Date().timeIntervalSince1970), logprobs: LogprobText(tokenizer: tokenizer),
            n: params.n, wantLogprobs: params.logprobs, promptIDs: try r.bool("return_token_ids") == true ? prompt : nil,
            includeUsage: try r.includeUsage())
        return try await drive(job, encoder, call: call)
    }

    /// The prompt's token ids: text, token ids, or one of those in a one-element array; with
    /// `suffix`, fill-in-the-middle in DeepSeek's layout
    /// BOS <｜fim▁begin｜>PREFIX<｜fim▁hole｜>SUFFIX<｜fim▁end｜> (the DeepSeek-Coder/V3
    /// convention; V4's own is not published), when the vocabulary has the tokens.
    func completionPrompt(_ body: JSONValue) throws -> [Int] {
        var fimSuffix: String?
        if let s = body["suffix"], !s.isNull {
            guard let text = s.stringValue else { throw APIError.badRequest("'suffix' must be a string", param: "suffix") }
            guard tokenizer.id(of: "<｜fim▁begin｜>") != nil, tokenizer.id(of: "<｜fim▁hole｜>") != nil, tokenizer.id(of: "<｜fim▁end｜>") != nil else {
                throw APIError.badRequest("this model's vocabulary has no fill-in-the-middle tokens", param: "suffix")
            }
            fimSuffix = text
        }
        guard let p = body["prompt"], !p.isNull else { throw APIError.badRequest("'prompt' is required", param: "prompt") }
        var prompt: [Int]
        switch p {
        case .string(let s) where fimSuffix != nil:
            prompt = tokenizer.encode("<｜begin▁of▁sentence｜><｜fim▁begin｜>" + s + "<｜fim▁hole｜>" + fimSuffix! + "<｜fim▁end｜>")
        case _ where fimSuffix != nil:
            throw APIError.badRequest("with 'suffix', 'prompt' must be a string", param: "prompt")
        case .string(let s): prompt = tokenizer.encode(s)
        case .array(let items):
            if items.allSatisfy({ $0.intValue != nil }) {
                prompt = items.map { $0.intValue! }
            } else if items.count == 1, let s = items[0].stringValue {
                prompt = tokenizer.encode(s)
            } else if items.count == 1, let ids = items[0].arrayValue, ids.allSatisfy({ $0.intValue != nil }) {
                prompt = ids.map { $0.intValue! }
            } else {
                throw APIError.badRequest("'prompt' must be a string, an array of token ids, or one of those in a one-element array (batches are not supported)", param: "prompt")
            }
        default: throw APIError.badRequest("'prompt' must be a string or an array of token ids", param: "prompt")
        }
        guard !prompt.isEmpty else { throw APIError.badRequest("the prompt is empty", param: "prompt") }
        if let bad = prompt.firstIndex(where: { $0 < 0 || $0 >= engine.model.vocabSize }) {
            throw APIError.badRequest("prompt token \(prompt[bad]) at index \(bad) is outside the vocabulary (0..<\(engine.model.vocabSize))", param: "prompt")
        }
        return prompt
    }
}

/// Completions answers: `text_completion` objects, whole or as SSE chunks.
struct CompletionEncoder: OpenAIStreamEncoder {
    static let chunkObject = "text_completion"
    struct Choice {
        var text = ""
        var ids: [Int] = []
        var tokens: [JSONValue] = []
        var logprobs: [JSONValue] = []
        var tops: [JSONValue] = []
        var finish = "stop"
    }

    let id: String
    let model: String
    let created: Int
    let logprobs: LogprobText
    let wantLogprobs: Bool
    /// The prompt's ids when the request asked for token ids (`return_token_ids`).
    let promptIDs: [Int]?
    let includeUsage: Bool
    var choices: [Choice]

    static let latencyMetric: String? = nil

    init(id: String, model: String, created: Int, logprobs: LogprobText, n: Int, wantLogprobs: Bool, promptIDs: [Int]?, includeUsage: Bool) {
        self.id = id
        self.model = model
        self.created = created
        self.logprobs = logprobs
        self.wantLogprobs = wantLogprobs
        self.promptIDs = promptIDs
        self.includeUsage = includeUsage
        choices = Array(repeating: Choice(), count: n)
    }

    func streamOpening(usage: GenerationUsage) -> String { "" }

    mutating func text(_ text: String, token: SampledToken?, choice k: Int, streaming: Bool) -> String {
        if streaming { return text.isEmpty && token == nil ? "" : chunk(k, text, token, finish: nil) }
        choices[k].text += text
        if let token {
            choices[k].ids.append(token.token)
            if wantLogprobs {
                let e = logprobs.completionEntry(token)
                choices[k].tokens.append(e.token)
                choices[k].logprobs.append(e.logprob)
                choices[k].tops.append(e.top)
            }
        }
        return ""
    }

    mutating func finish(
        choice k: Int, reason: FinishReason, stopString: String?, streaming: Bool, timings: JSONValue?
    ) -> (reason: String, events: String) {
        let name = reason == .length ? "length" : "stop"
        choices[k].finish = name
        guard streaming else { return (name, "") }
        return (name, chunk(k, "", nil, finish: name, extra: timings.map { [("timings", $0)] } ?? []))
    }

    func chunk(_ k: Int, _ text: String, _ token: SampledToken?, finish: String?, extra: [(String, JSONValue)] = []) -> String {
        var c: [(String, JSONValue)] = [("index", .n(k)), ("text", .s(text))]
        if wantLogprobs, let token {
            let e = logprobs.completionEntry(token)
            c.append(("logprobs", .object([("tokens", .array([e.token])), ("token_logprobs", .array([e.logprob])), ("top_logprobs", .array([e.top]))])))
        } else {
            c.append(("logprobs", .null))
        }
        c.append(("finish_reason", finish.map { .s($0) } ?? .null))
        if promptIDs != nil { c.append(("token_ids", .array(token.map { [.n($0.token)] } ?? []))) }
        var v = header + [("choices", .array([.object(c)]))]
        if let promptIDs { v.append(("prompt_token_ids", .array(promptIDs.map { .n($0) }))) }
        return event(v + extra)
    }

    func response(usage: GenerationUsage, timings: JSONValue) -> JSONValue {
        let list: [JSONValue] = choices.enumerated().map { k, a in
            var c: [(String, JSONValue)] = [("index", .n(k)), ("text", .s(a.text))]
            c.append(("logprobs", wantLogprobs
                ? .object([("tokens", .array(a.tokens)), ("token_logprobs", .array(a.logprobs)), ("top_logprobs", .array(a.tops))]) : .null))
            c.append(("finish_reason", .s(a.finish)))
            if promptIDs != nil { c.append(("token_ids", .array(a.ids.map { .n($0) }))) }
            return .object(c)
        }
        var fields = header + [("choices", .array(list)), ("usage", usage.openAIJSON), ("timings", timings)]
        if let promptIDs { fields.append(("prompt_token_ids", .array(promptIDs.map { .n($0) }))) }
        return .object(fields)
    }
}
