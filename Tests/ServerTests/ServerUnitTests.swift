// ServerUnitTests.swift: request mapping and error bodies without a network.
import Foundation
import OpenAIAPI
@testable import Server
import Testing
import Tokenization

@Suite struct ServerUnitTests {
    @Test func anthropicRequestBecomesTheEquivalentChatRequest() throws {
        let body = try JSONValue.parse(#"""
            {"model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "Be brief."}],
             "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
             "messages": [
               {"role": "user", "content": "hi"},
               {"role": "assistant", "content": [{"type": "thinking", "thinking": "r"}, {"type": "text", "text": "ok"},
                                                  {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}, {"type": "text", "text": "next"}]}
             ], "thinking": {"type": "enabled", "budget_tokens": 5}}
            """#)
        let chat = try DSV4Server.chatBody(fromMessages: body)
        let conv = try ChatConversation(request: chat)
        #expect(conv.thinking)
        #expect(conv.tools.count == 1 && conv.tools[0]["parameters"] == .object([("type", .string("object"))]))
        #expect(conv.messages.map(\.role) == [.system, .user, .assistant, .tool, .user])
        #expect(conv.messages[2].reasoning == "r" && conv.messages[2].toolCalls[0].arguments == #"{"a": 1}"#)
        let prompt = PromptRenderer.render(conv)
        #expect(prompt.contains("<tool_result>done</tool_result>\n\nnext<｜Assistant｜><think>"))
        #expect(prompt.contains("<think>r</think>ok\n\n<｜DSML｜tool_calls>"))
    }

    /// As deepseek-recipe's MessagesRequest: thinking unless `thinking.type` is "disabled"
    /// (this server used to default to non-thinking, so its prompts differed from the recipe's).
    @Test func anthropicRequestsThinkUnlessDisabled() throws {
        func thinking(_ json: String) throws -> Bool { try ChatConversation(request: try DSV4Server.chatBody(fromMessages: try JSONValue.parse(json))).thinking }
        #expect(try thinking(#"{"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}"#))
        #expect(try thinking(#"{"max_tokens": 5, "thinking": {"type": "adaptive"}, "messages": [{"role": "user", "content": "x"}]}"#))
        #expect(try thinking(#"{"max_tokens": 5, "thinking": {"type": "disabled"}, "messages": [{"role": "user", "content": "x"}]}"#) == false)
        #expect(throws: APIError.self) { try DSV4Server.chatBody(fromMessages: try JSONValue.parse(#"{"messages": [{"role": "bot", "content": "x"}]}"#)) }
    }

    @Test func errorBodiesAreOpenAIShaped() throws {
        let e = APIError.badRequest("bad 'x'", param: "x", code: "invalid_value")
        let v = try JSONValue.parse(e.body)
        #expect(v["error"]?["message"]?.stringValue == "bad 'x'")
        #expect(v["error"]?["type"]?.stringValue == "invalid_request_error")
        #expect(v["error"]?["param"]?.stringValue == "x" && v["error"]?["code"]?.stringValue == "invalid_value")
        #expect(e.status.code == 400)
    }

    /// Regression: /v1/messages answered errors in OpenAI's shape; Anthropic's clients read
    /// {"type": "error", "error": {"type", "message"}} with Anthropic's error types.
    @Test func errorBodiesOnMessagesAreAnthropicShaped() throws {
        #expect(APIDialect(path: "/v1/messages") == .anthropic && APIDialect(path: "/v1/messages/") == .anthropic)
        #expect(APIDialect(path: "/v1/chat/completions") == .openAI)
        let cases: [(APIError, String)] = [
            (.badRequest("bad", param: "x"), "invalid_request_error"),
            (APIError(.unauthorized, "key", type: "authentication_error"), "authentication_error"),
            (APIError(.forbidden, "no"), "permission_error"),
            (APIError(.notFound, "model"), "not_found_error"),
            (APIError(.contentTooLarge, "big"), "request_too_large"),
            (APIError(.tooManyRequests, "busy", type: "rate_limit_error"), "rate_limit_error"),
            (.internal("boom"), "api_error"),
            (APIError(.serviceUnavailable, "stopping", type: "server_error"), "overloaded_error"),
        ]
        for (e, type) in cases {
            let v = try JSONValue.parse(e.body(requestID: "req-1", dialect: .anthropic))
            #expect(v["type"]?.stringValue == "error", "\(e.status)")
            #expect(v["error"]?["type"]?.stringValue == type, "\(e.status)")
            #expect(v["error"]?["message"]?.stringValue?.isEmpty == false)
            #expect(v["request_id"]?.stringValue == "req-1")
            #expect(v["error"]?["param"] == nil && v["error"]?["code"] == nil)
        }
    }

    /// Regression: a 500 carried the internal error's text (a model failure's message) to
    /// the client. It is logged with the request id; the client gets a generic message.
    @Test func internalErrorTextNeverReachesTheClient() throws {
        let e = DSV4Server.map(.modelFailure("NaN in layer 3 at /secret/path"))
        #expect(e.status.code == 500)
        for dialect in [APIDialect.openAI, .anthropic] {
            let body = e.body(requestID: "req-42", dialect: dialect)
            #expect(!body.contains("NaN") && !body.contains("/secret/path"), "\(body)")
            #expect(body.contains("req-42"))
        }
        #expect(e.internalDetail?.contains("NaN in layer 3") == true)
    }

    /// A server that lost an expert-parallel worker answers 503 with the reason (not a 500).
    @Test func unavailableEngineIsA503WithItsReason() {
        let e = DSV4Server.map(.unavailable(reason: "an expert-parallel worker rank stopped answering"))
        #expect(e.status.code == 503)
        #expect(e.body(requestID: "req-7", dialect: .openAI).contains("worker rank stopped answering"))
    }

    /// API keys are compared with every byte of every configured key (a timing attack
    /// cannot be shown in a unit test; this pins the comparison's answers).
    @Test func apiKeysMatchExactly() {
        let keys = ["sk-alpha", "sk-beta-longer"]
        #expect(DSV4Server.keyMatches("sk-alpha", keys))
        #expect(DSV4Server.keyMatches("sk-beta-longer", keys))
        for bad in ["", "sk-alph", "sk-alphaa", "sk-alpha\0", "sk-beta", "SK-ALPHA", "sk-beta-longer "] {
            #expect(!DSV4Server.keyMatches(bad, keys), "\(bad.debugDescription)")
        }
        #expect(!DSV4Server.keyMatches("sk-alpha", []))
        #expect(DSV4Server.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!DSV4Server.constantTimeEqual(Array("ab".utf8), Array("abc".utf8)))
        #expect(!DSV4Server.constantTimeEqual([0, 0, 0, 0], Array("".utf8)))
    }
}

/// `response_format: json_schema` keywords the decoder cannot enforce are refused, named,
/// with their location; the supported subset parses.
@Suite struct SchemaKeywordTests {
    func rejection(_ schema: String) -> APIError? {
        do {
            _ = try SchemaNode.parse(try JSONValue.parse(schema))
            return nil
        } catch let e as APIError {
            return e
        } catch {
            return nil
        }
    }

    /// Regression: `pattern`, `minimum`, `format` and the like were silently ignored.
    @Test func unenforceableKeywordsAreRefusedWithTheirLocation() {
        let root = "response_format.json_schema.schema"
        let cases: [(String, String)] = [
            (#"{"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}"#, "\(root).properties.age.minimum"),
            (#"{"type": "object", "properties": {"id": {"type": "string", "pattern": "^[a-z]+$"}}}"#, "\(root).properties.id.pattern"),
            (#"{"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}"#, "\(root).properties.d.format"),
            (#"{"type": "object", "properties": {"s": {"type": "string", "minLength": 2}}}"#, "\(root).properties.s.minLength"),
            (#"{"type": "object", "properties": {"n": {"type": "number", "multipleOf": 3}}}"#, "\(root).properties.n.multipleOf"),
            (#"{"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string", "maxLength": 3}}}}"#, "\(root).properties.a.items.maxLength"),
            (#"{"type": "object", "properties": {"a": {"type": "array", "maxItems": 3}}}"#, "\(root).properties.a.maxItems"),
            (#"{"type": "object", "maxProperties": 3}"#, "\(root).maxProperties"),
            (#"{"type": "object", "additionalProperties": {"type": "string"}}"#, "\(root).additionalProperties"),
            (##"{"type": "object", "properties": {"x": {"$ref": "#/$defs/x"}}}"##, "\(root).properties.x.$ref"),
            (#"{"anyOf": [{"type": "object"}]}"#, "\(root).anyOf"),
            (#"{"type": "object", "properties": {"t": {"type": "date"}}}"#, "\(root).properties.t.type"),
        ]
        for (schema, param) in cases {
            let e = rejection(schema)
            #expect(e?.status.code == 400, "\(schema)")
            #expect(e?.param == param, "\(schema)")
            let keyword = String(param.split(separator: ".").last!)
            #expect(e?.message.contains(keyword) == true, "\(e?.message ?? "accepted")")
        }
    }

    @Test func theSupportedSubsetParses() throws {
        let schema = #"""
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "T", "description": "d", "type": "object",
             "properties": {"ok": {"type": "boolean", "description": "x"}, "n": {"type": ["integer", "null"]},
                            "c": {"enum": ["r", "g"]}, "k": {"const": 1}, "tags": {"type": "array", "items": {"type": "string"}}},
             "required": ["ok"], "additionalProperties": false}
            """#
        #expect(rejection(schema) == nil)
    }
}
