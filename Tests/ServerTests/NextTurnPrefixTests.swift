// NextTurnPrefixTests.swift: the prefix the server warms after an answer is exactly how the
// next turn's prompt begins when the client sends the answer back (the prefix cache then
// resumes at its end), under each of the template's rules for history turns.
import Foundation
import OpenAIAPI
@testable import Server
import Testing
import Tokenization

@Suite struct NextTurnPrefixTests {
    static var tools: [Any] { [["type": "function", "function": ["name": "read_file", "parameters": ["type": "object", "properties": ["path": ["type": "string"]]]]]] }

    /// A request body (keys sorted: the tools render the same in both turns).
    func body(_ messages: [[String: Any]], tools: Bool, thinking: Bool) throws -> JSONValue {
        var b: [String: Any] = ["model": "m", "messages": messages, "thinking": ["type": thinking ? "enabled" : "disabled"]]
        if tools { b["tools"] = Self.tools }
        return try JSONValue.parse(String(decoding: try JSONSerialization.data(withJSONObject: b, options: .sortedKeys), as: UTF8.self))
    }

    /// Runs `output` (the model's text) through the chat answer's parser, and checks that the
    /// warmed prefix begins the prompt of the next turn built from the answer as the API
    /// returned it (content, reasoning_content, tool_calls with their ids), a tool result for
    /// each call and a new user message.
    func check(output: String, tools: Bool, thinking: Bool, expectCalls: Int) throws {
        let first: [[String: Any]] = [["role": "system", "content": "Be brief."], ["role": "user", "content": "Fix the build."]]
        let conv = try ChatConversation(request: try body(first, tools: tools, thinking: thinking))
        var answer = ChoiceAccumulator(thinking: thinking, tools: tools)
        answer.apply(answer.parser.push(output))
        answer.apply(answer.parser.finish())
        #expect(answer.output.toolCalls.count == expectCalls)
        let prefix = try #require(ChatEncoder.nextTurnPrefix(conv, answer: answer))

        var assistant: [String: Any] = ["role": "assistant", "content": answer.output.content ?? ""]
        if let r = answer.output.reasoning { assistant["reasoning_content"] = r }
        let calls = zip(answer.output.toolCalls, answer.toolIDs).map { c, id in
            ["id": id, "type": "function", "function": ["name": c.name, "arguments": c.arguments]] as [String: Any]
        }
        if !calls.isEmpty { assistant["tool_calls"] = calls }
        var next = first + [assistant]
        for c in calls { next.append(["role": "tool", "tool_call_id": c["id"]!, "content": "{\"ok\": true}"]) }
        next.append(["role": "user", "content": "Go on."])
        let nextPrompt = PromptRenderer.render(try ChatConversation(request: try body(next, tools: tools, thinking: thinking)))
        #expect(nextPrompt.hasPrefix(prefix), "the warmed prefix is not how the next turn begins:\n\(prefix)\n---\n\(nextPrompt)")
        #expect(prefix.hasSuffix(PromptRenderer.eos))
    }

    @Test func thinkingWithToolsKeepsTheReasoning() throws {
        try check(
            output: "Look first.</think>Reading it.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"read_file\">\n<｜DSML｜parameter name=\"path\" string=\"true\">Package.swift</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
            tools: true, thinking: true, expectCalls: 1)
    }

    @Test func thinkingWithoutToolsDropsTheReasoning() throws {
        try check(output: "Hmm, the linker.</think>Add the missing library.", tools: false, thinking: true, expectCalls: 0)
    }

    @Test func nonThinkingToolCallsAreReserialised() throws {
        // The history renders tool calls from their parsed arguments, as the warmed prefix does.
        try check(
            output: "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"read_file\">\n<｜DSML｜parameter name=\"path\" string=\"true\">a b.swift</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
            tools: true, thinking: false, expectCalls: 1)
    }

    @Test func anAssistantPrefixContinuationIsNotWarmed() throws {
        let conv = try ChatConversation(request: try body(
            [["role": "user", "content": "x"], ["role": "assistant", "content": "Once", "prefix": true]], tools: false, thinking: false))
        var answer = ChoiceAccumulator(thinking: false, tools: false)
        answer.apply(answer.parser.push(" upon a time"))
        #expect(ChatEncoder.nextTurnPrefix(conv, answer: answer) == nil)
    }
}
