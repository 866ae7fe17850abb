// ServerUnitTests.swift: request mapping and error bodies without a network.
import Foundation
import OpenAIAPI
import Server
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

    @Test func anthropicRequestsWithoutThinkingAreNonThinking() throws {
        let chat = try DSV4Server.chatBody(fromMessages: try JSONValue.parse(#"{"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}"#))
        #expect(try ChatConversation(request: chat).thinking == false)
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
}
