// PromptRendererTests.swift: prompts byte-identical to deepseek-recipe (golden requests from
// tools/render_goldens.py), and request errors located by JSON path.
import Foundation
import OpenAIAPI
import Testing
import Tokenization

@Suite struct PromptRendererTests {
    @Test func goldenRequestsRenderByteIdentically() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/chat/render_golden.jsonl")
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        #expect(lines.count >= 400)
        var failures = 0
        for line in lines {
            let row = try JSONValue.parse(String(line))
            let expected = try #require(row["prompt"]?.stringValue)
            let ours = PromptRenderer.render(try ChatConversation(request: try #require(row["request"])))
            if ours != expected {
                failures += 1
                if failures <= 3 { Issue.record("expected \(expected.debugDescription)\n got \(ours.debugDescription)") }
            }
        }
        #expect(failures == 0)
    }

    @Test func promptStartsWithExactlyOneBOS() throws {
        let t = try #require(sharedTokenizer)
        let req = try JSONValue.parse(#"{"messages":[{"role":"user","content":"<｜begin▁of▁sentence｜> hi"}]}"#)
        let ids = t.encode(PromptRenderer.render(try ChatConversation(request: req)))
        #expect(ids.first == 0)
        #expect(ids.dropFirst().first != 0)
        #expect(ids.last == t.id(of: "<think>"))
    }

    @Test func badRequestsNameTheField() throws {
        func error(_ json: String) throws -> ChatRequestError? {
            do {
                _ = try ChatConversation(request: try JSONValue.parse(json))
                return nil
            } catch let e as ChatRequestError { return e }
        }
        #expect(try error(#"{}"#)?.param == "messages")
        #expect(try error(#"{"messages": []}"#)?.param == "messages")
        #expect(try error(#"{"messages": [{"role": "wizard", "content": "x"}]}"#)?.param == "messages[0].role")
        #expect(try error(#"{"messages": [{"role": "user", "content": 5}]}"#)?.param == "messages[0].content")
        #expect(try error(#"{"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"}"#)?.param == "reasoning_effort")
        // Every call of an assistant turn needs its result.
        #expect(try error(#"{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "user", "content": "y"}], "tools": [{"type": "function", "function": {"name": "f"}}]}"#)?.param == "messages[1].tool_calls")
        #expect(try error(#"{"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "a", "content": "r"}]}"#)?.param == "messages[1]")
        #expect(try error(#"{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": null}]}"#)?.param == "messages[1].content")
        #expect(try error(#"{"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "sometimes"}}"#)?.param == "thinking.type")
    }

    @Test func jsonParserRejectsMalformedInput() throws {
        for bad in ["{", "[1,]", "{\"a\" 1}", "\"\\ud800\"", "01", "1.", "tru", "[" + String(repeating: "[", count: 300) + "]"] {
            #expect(throws: JSONParseError.self) { try JSONValue.parse(bad) }
        }
        #expect(try JSONValue.parse(#"{"b": 2.50, "a": [1e-5, "x\u00e9"]}"#).promptJSON() == #"{"b": 2.5, "a": [0.00001, "xé"]}"#)
    }
}
