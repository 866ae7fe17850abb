// RequestParsing.swift: sampling parameters and other request fields, read strictly from
// JSON with OpenAI-style located errors.
import Engine
import OpenAIAPI

struct FieldReader {
    let body: JSONValue

    func has(_ k: String) -> Bool { body[k].map { !$0.isNull } ?? false }

    func number(_ k: String) throws -> Double? {
        guard let v = body[k], !v.isNull else { return nil }
        guard let d = v.doubleValue, d.isFinite else { throw APIError.badRequest("'\(k)' must be a number", param: k, code: "invalid_type") }
        return d
    }

    func int(_ k: String) throws -> Int? {
        guard let v = body[k], !v.isNull else { return nil }
        guard let i = v.intValue else { throw APIError.badRequest("'\(k)' must be an integer", param: k, code: "invalid_type") }
        return i
    }

    func bool(_ k: String) throws -> Bool? {
        guard let v = body[k], !v.isNull else { return nil }
        guard let b = v.boolValue else { throw APIError.badRequest("'\(k)' must be a boolean", param: k, code: "invalid_type") }
        return b
    }

    func string(_ k: String) throws -> String? {
        guard let v = body[k], !v.isNull else { return nil }
        guard let s = v.stringValue else { throw APIError.badRequest("'\(k)' must be a string", param: k, code: "invalid_type") }
        return s
    }

    /// `stream_options.include_usage` (false when absent).
    func includeUsage() throws -> Bool {
        guard let o = body["stream_options"], !o.isNull else { return false }
        guard o.objectValue != nil else { throw APIError.badRequest("'stream_options' must be an object", param: "stream_options", code: "invalid_type") }
        guard let v = o["include_usage"], !v.isNull else { return false }
        guard let b = v.boolValue else {
            throw APIError.badRequest("'stream_options.include_usage' must be a boolean", param: "stream_options.include_usage", code: "invalid_type")
        }
        return b
    }

    /// Messages whose role requires `content` (OpenAI: system, developer, user, tool) have it.
    func checkMessageContent() throws {
        guard let list = body["messages"]?.arrayValue else { return }  // ChatConversation reports the shape
        for (i, m) in list.enumerated() {
            guard let role = m["role"]?.stringValue, ["system", "developer", "user", "tool"].contains(role) else { continue }
            if m["content"] == nil || m["content"]!.isNull {
                throw APIError.badRequest("a '\(role)' message needs 'content'", param: "messages[\(i)].content")
            }
        }
    }

    /// Sampling parameters shared by chat and completions (OpenAI + vLLM extensions).
    func sampling(defaultMaxTokens: Int, logprobsAsCount: Bool) throws -> SamplingParameters {
        var p = SamplingParameters()
        if let t = try number("temperature") { p.temperature = Float(t) }
        if let t = try number("top_p") { p.topP = Float(t) }
        if let k = try int("top_k") { p.topK = k }
        if let m = try number("min_p") { p.minP = Float(m) }
        if let v = try number("presence_penalty") { p.presencePenalty = Float(v) }
        if let v = try number("frequency_penalty") { p.frequencyPenalty = Float(v) }
        if let v = try number("repetition_penalty") { p.repetitionPenalty = Float(v) }
        if let s = try int("seed") { p.seed = UInt64(bitPattern: Int64(s)) }
        if let n = try int("n") { p.n = n }
        p.maxTokens = try int("max_completion_tokens") ?? int("max_tokens") ?? defaultMaxTokens
        if let b = try bool("ignore_eos") { p.ignoreEOS = b }
        if let v = body["stop"], !v.isNull {
            if let s = v.stringValue {
                p.stop = [s]
            } else if let a = v.arrayValue {
                p.stop = try a.map {
                    guard let s = $0.stringValue else { throw APIError.badRequest("'stop' must be a string or an array of strings", param: "stop") }
                    return s
                }
            } else {
                throw APIError.badRequest("'stop' must be a string or an array of strings", param: "stop")
            }
        }
        if let v = body["stop_token_ids"], !v.isNull {
            guard let a = v.arrayValue, a.allSatisfy({ $0.intValue != nil }) else {
                throw APIError.badRequest("'stop_token_ids' must be an array of integers", param: "stop_token_ids")
            }
            p.stopTokenIds = a.map { $0.intValue! }
        }
        if let v = body["logit_bias"], !v.isNull {
            guard let o = v.objectValue else { throw APIError.badRequest("'logit_bias' must be an object", param: "logit_bias") }
            for (k, b) in o {
                guard let id = Int(k), let bias = b.doubleValue else {
                    throw APIError.badRequest("'logit_bias' maps token ids to numbers", param: "logit_bias")
                }
                p.logitBias[id] = Float(bias)
            }
        }
        if logprobsAsCount {
            if let n = try int("logprobs") {
                p.logprobs = true
                p.topLogprobs = n
            }
        } else {
            p.logprobs = try bool("logprobs") ?? false
            if let n = try int("top_logprobs") {
                guard p.logprobs else { throw APIError.badRequest("'top_logprobs' needs 'logprobs': true", param: "top_logprobs") }
                p.topLogprobs = n
            }
        }
        return p
    }
}
