// DSV4Server+Completions.swift: POST /v1/completions: a raw prompt (text or token ids),
// with vLLM's `return_token_ids` extension so clients can check exact tokens.
import Engine
import Foundation
import Hummingbird
import NIOCore
import OpenAIAPI
import Tokenization

extension DSV4Server {
    func completions(_ body: JSONValue, _ call: Call) async throws -> Response {
        try checkModel(body)
        let r = FieldReader(body: body)
        // Fill-in-the-middle: DeepSeek's layout BOS <｜fim▁begin｜>PREFIX<｜fim▁hole｜>SUFFIX<｜fim▁end｜>
        // (the DeepSeek-Coder/V3 convention; V4's own is not published), when the vocabulary has the tokens.
        var fimSuffix: String?
        if let s = body["suffix"], !s.isNull {
            guard let text = s.stringValue else { throw APIError.badRequest("'suffix' must be a string", param: "suffix") }
            guard tokenizer.id(of: "<｜fim▁begin｜>") != nil, tokenizer.id(of: "<｜fim▁hole｜>") != nil, tokenizer.id(of: "<｜fim▁end｜>") != nil else {
                throw APIError.badRequest("this model's vocabulary has no fill-in-the-middle tokens", param: "suffix")
            }
            fimSuffix = text
        }
        if try r.bool("echo") == true { throw APIError.badRequest("'echo' is not supported", param: "echo") }
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
        let params = try r.sampling(defaultMaxTokens: min(16, max(1, options.maxModelLen - prompt.count)), logprobsAsCount: true)
        try checkContext(promptTokens: prompt.count, maxTokens: params.maxTokens)
        let stream = try r.bool("stream") ?? false
        let returnIDs = try r.bool("return_token_ids") ?? false
        let includeUsage = try r.includeUsage()
        let record = call.record
        let run = try GenerationRun(
            engine: engine, tokenizer: tokenizer, prompt: prompt, parameters: params, hiddenTokens: hiddenTokens, record: record)
        if stream { record.update { $0.stream = true } }
        call.onClientGone(self) { run.cancel() }
        let id = Self.requestID("cmpl-")
        let n = params.n
        let wantLogprobs = params.logprobs

        @Sendable func reason(_ f: FinishReason) -> String { f == .length ? "length" : "stop" }
        @Sendable func logprobEntry(_ s: SampledToken) -> (token: JSONValue, lp: JSONValue, top: JSONValue) {
            let text = String(decoding: tokenizer.bytes(of: s.token), as: UTF8.self)
            let top: JSONValue = .object(s.top.map { (String(decoding: tokenizer.bytes(of: $0.token), as: UTF8.self), .f($0.logprob)) })
            return (.s(text), .f(s.logprob), top)
        }
        struct Acc {
            var text = ""
            var ids: [Int] = []
            var tokens: [JSONValue] = []
            var lps: [JSONValue] = []
            var tops: [JSONValue] = []
            var finish = "stop"
        }
        @Sendable func usage(_ p: Int, _ c: Int, _ cached: Int) -> JSONValue {
            .object([("prompt_tokens", .n(p)), ("completion_tokens", .n(c)), ("total_tokens", .n(p + c)),
                     ("prompt_tokens_details", .object([("cached_tokens", .n(cached))]))])
        }

        if !stream {
            var accs = [Acc](repeating: Acc(), count: n)
            var cached = 0, completion = 0
            let updates = run.updates()
            try await withTaskCancellationHandler {
                for await u in updates {
                    switch u {
                    case .started(_, let c): cached = c
                    case .text(let k, let t, let token):
                        accs[k].text += t
                        if let token {
                            accs[k].ids.append(token.token)
                            if wantLogprobs {
                                let e = logprobEntry(token)
                                accs[k].tokens.append(e.token); accs[k].lps.append(e.lp); accs[k].tops.append(e.top)
                            }
                        }
                    case .finished(let k, let f, let t):
                        accs[k].finish = reason(f)
                        record.finished(accs[k].finish)
                        completion += t
                    case .keepAlive: break
                    case .failed(let e): throw Self.map(e)
                    }
                }
            } onCancel: { run.cancel() }
            metrics.tokens(prompt: prompt.count, completion: completion, cached: cached)
            let choices: [JSONValue] = accs.enumerated().map { k, a in
                var c: [(String, JSONValue)] = [("index", .n(k)), ("text", .s(a.text))]
                c.append(("logprobs", wantLogprobs ? .object([("tokens", .array(a.tokens)), ("token_logprobs", .array(a.lps)), ("top_logprobs", .array(a.tops))]) : .null))
                c.append(("finish_reason", .s(a.finish)))
                if returnIDs { c.append(("token_ids", .array(a.ids.map { .n($0) }))) }
                return .object(c)
            }
            var resp: [(String, JSONValue)] = [
                ("id", .s(id)), ("object", .s("text_completion")), ("created", .n(created)), ("model", .s(modelName)),
                ("choices", .array(choices)), ("usage", usage(prompt.count, completion, cached)), ("timings", record.timingsJSON),
            ]
            if returnIDs { resp.append(("prompt_token_ids", .array(prompt.map { .n($0) }))) }
            return json(.object(resp))
        }

        let promptIDs = prompt
        let keepAlive = Duration.seconds(options.keepAliveSeconds)
        let body = ResponseBody { [self] writer in
            defer { finish(record) }
            var cached = 0, completion = 0, finishedCount = 0
            @Sendable func chunk(_ k: Int, _ text: String, _ token: SampledToken?, finish: String?, extra: [(String, JSONValue)] = []) -> String {
                var c: [(String, JSONValue)] = [("index", .n(k)), ("text", .s(text))]
                if wantLogprobs, let token {
                    let e = logprobEntry(token)
                    c.append(("logprobs", .object([("tokens", .array([e.token])), ("token_logprobs", .array([e.lp])), ("top_logprobs", .array([e.top]))])))
                } else {
                    c.append(("logprobs", .null))
                }
                c.append(("finish_reason", finish.map { .s($0) } ?? .null))
                if returnIDs { c.append(("token_ids", .array(token.map { [.n($0.token)] } ?? []))) }
                var v: [(String, JSONValue)] = [("id", .s(id)), ("object", .s("text_completion")), ("created", .n(created)),
                                                ("model", .s(modelName)), ("choices", .array([.object(c)]))]
                if returnIDs { v.append(("prompt_token_ids", .array(promptIDs.map { .n($0) }))) }
                return "data: " + JSONValue.object(v + extra).promptJSON() + "\n\n"
            }
            do {
                for await u in run.updates(keepAliveEvery: keepAlive) {
                    var out = ""
                    switch u {
                    case .started(_, let c): cached = c
                    case .keepAlive: out = ": keep-alive\n\n"
                    case .text(let k, let t, let token): if !t.isEmpty || token != nil { out = chunk(k, t, token, finish: nil) }
                    case .finished(let k, let f, let t):
                        completion += t
                        finishedCount += 1
                        record.finished(reason(f))
                        out = chunk(k, "", nil, finish: reason(f), extra: finishedCount == n ? [("timings", record.timingsJSON)] : [])
                    case .failed(let e): out = "data: " + Self.map(e).body + "\n\n"
                    }
                    if !out.isEmpty { try await writer.write(ByteBuffer(string: out)) }
                }
                if includeUsage {
                    let v: JSONValue = .object([("id", .s(id)), ("object", .s("text_completion")), ("created", .n(created)),
                                                ("model", .s(modelName)), ("choices", .array([])), ("usage", usage(promptIDs.count, completion, cached)),
                                                ("timings", record.timingsJSON)])
                    try await writer.write(ByteBuffer(string: "data: " + v.promptJSON() + "\n\n"))
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
                metrics.tokens(prompt: promptIDs.count, completion: completion, cached: cached)
            } catch {
                run.cancel()
                if record.clientGone() { metrics.clientCancelled() }
                throw error
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}
