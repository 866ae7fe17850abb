// RequestConversionTests.swift: Responses and Messages requests become the V4 prompt
// byte-identical to deepseek-recipe (golden requests from tools/render_goldens.py --api …),
// and Responses items that cannot be used get a 400 naming them.
import Foundation
import OpenAIAPI
@testable import Server
import Testing
import Tokenization

@Suite struct RequestConversionTests {
    /// Renders every golden request of `api` and counts the prompts that differ.
    func goldenMismatches(_ api: String, convert: (JSONValue) throws -> JSONValue) throws -> (count: Int, failures: Int) {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/\(api)/render_golden.jsonl")
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        var failures = 0
        for line in lines {
            let row = try JSONValue.parse(String(line))
            let expected = try #require(row["prompt"]?.stringValue)
            let ours = PromptRenderer.render(try ChatConversation(request: try convert(try #require(row["request"]))))
            if ours != expected {
                failures += 1
                if failures <= 3 { Issue.record("\(api): expected \(expected.debugDescription)\n got \(ours.debugDescription)") }
            }
        }
        return (lines.count, failures)
    }

    @Test func responsesRequestsRenderLikeTheRecipe() throws {
        let r = try goldenMismatches("responses") { try DSV4Server.chatBody(fromResponses: $0) }
        #expect(r.count >= 150 && r.failures == 0)
    }

    @Test func messagesRequestsRenderLikeTheRecipe() throws {
        let r = try goldenMismatches("messages") { try DSV4Server.chatBody(fromMessages: $0) }
        #expect(r.count >= 150 && r.failures == 0)
    }

    @Test func assistantItemsInARowFormOneTurn() throws {
        let body = try JSONValue.parse(#"""
            {"input": [{"role": "user", "content": "q"},
              {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "A"}, {"type": "reasoning_text", "text": "B"}]},
              {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x"}]},
              {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
              {"type": "function_call_output", "call_id": "c1", "output": "r"},
              {"type": "reasoning", "summary": [{"type": "summary_text", "text": "only a summary"}]},
              {"role": "developer", "content": "dev"}],
             "instructions": "sys", "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}
            """#)
        let conv = try ChatConversation(request: try DSV4Server.chatBody(fromResponses: body))
        #expect(conv.messages.map(\.role) == [.system, .user, .assistant, .tool, .user])
        #expect(conv.messages[2].reasoning == "A\nB" && conv.messages[2].content == "x" && conv.messages[2].toolCalls.map(\.id) == ["c1"])
        #expect(conv.messages[4].content == "dev" && conv.tools.count == 1)
    }

    @Test func unusableResponsesInputIsA400NamingIt() throws {
        func param(_ json: String) throws -> String? {
            do {
                _ = try ChatConversation(request: try DSV4Server.chatBody(fromResponses: try JSONValue.parse(json)))
                return nil
            } catch let e as APIError {
                return e.param
            } catch let e as ChatRequestError {
                return e.param
            }
        }
        #expect(try param(#"{"input": [{"type": "item_reference", "id": "x"}]}"#) == "input[0].type")
        #expect(try param(#"{"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}"#) == "input[0].content[0].type")
        #expect(try param(#"{"input": "x", "tools": [{"type": "custom", "name": "t"}]}"#) == "tools[0].type")
        #expect(try param(#"{"input": "x", "reasoning": {"effort": "extreme"}}"#) == "reasoning.effort")
        #expect(try param(#"{"input": "x", "text": {"format": {"type": "json_schema"}}}"#) == "text.format.schema")
        #expect(try param(#"{"input": []}"#) == "input")
        #expect(try param(#"{"model": "m"}"#) == "input")
        #expect(try param(#"{"input": [{"role": "user", "content": "x"}, {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]}"#) == "messages[1].tool_calls")
        #expect(try param(#"{"input": "x", "tools": [{"type": "function", "name": "f", "strict": true, "parameters": {"type": "object", "properties": {"a": {"type": "string"}}, "required": []}}]}"#) == "tools[0].function.parameters.required")
    }
}
