// OutputParserTests.swift: streamed output split into reasoning, content and tool calls,
// compared with deepseek-recipe's stream parser (tools/parse_goldens.py), plus exact replay.
import Foundation
import OpenAIAPI
import Testing
import Tokenization

@Suite struct OutputParserTests {
    func parse(_ text: String, thinking: Bool = true, tools: Bool = true, chunk: Int = .max) -> ParsedOutput {
        ParsedOutput.parse(text, thinking: thinking, parseToolCalls: tools, chunk: chunk)
    }

    /// 300 generations (`tools/parse_goldens.py golden` defaults: thinking on/off, tools on/off,
    /// parallel calls, unterminated blocks, odd characters, chunk sizes 1–1000): every one
    /// identical to deepseek-recipe.
    @Test func goldenStreamsMatchDeepseekRecipe() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/chat/parse_golden.jsonl")
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 300)
        var mismatches: [String] = []
        for line in lines {
            let row = try JSONValue.parse(String(line))
            let input = try #require(row["input"]), expected = try #require(row["expected"])
            let chunkText: String = if case .number(let n)? = input["chunk"] { n } else { "1000000" }
            let got = parse(
                try #require(input["text"]?.stringValue), thinking: input["thinking"]?.boolValue ?? true,
                tools: input["tools"]?.boolValue ?? true, chunk: Int(chunkText) ?? .max)
            var want = ParsedOutput(thinking: false)
            want.reasoning = expected["reasoning_content"]?.stringValue
            want.content = expected["content"]?.stringValue
            want.toolCalls = (expected["tool_calls"]?.arrayValue ?? []).map { ($0["name"]?.stringValue ?? "", $0["arguments"]?.stringValue ?? "") }
            if got != want { mismatches.append(String(line.prefix(200))) }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) mismatches: \(mismatches.prefix(3))")
    }

    @Test func streamingNeverLeaksMarkup() {
        let gen = "Let me check.</think>Sure.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"location\" string=\"true\">Paris \"centre\"</｜DSML｜parameter>\n<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>"
        for chunk in [1, 2, 3, 5, 8, 1000] {
            var p = OutputParser(thinking: true, parseToolCalls: true)
            var deltas: [OutputDelta] = []
            let chars = Array(gen)
            var i = 0
            while i < chars.count {
                deltas += p.push(String(chars[i..<min(chars.count, i + chunk)]))
                i += chunk
            }
            deltas += p.finish()
            for d in deltas {
                if case .content(let s) = d { #expect(!s.contains("DSML") && !s.contains("think>"), "chunk \(chunk): \(s)") }
                if case .reasoning(let s) = d { #expect(!s.contains("</"), "chunk \(chunk): \(s)") }
            }
            var out = ParsedOutput(thinking: true)
            for d in deltas { out.apply(d) }
            #expect(out.reasoning == "Let me check.")
            #expect(out.content == "Sure.")
            #expect(out.toolCalls.count == 1 && out.toolCalls[0].name == "get_weather")
            #expect(out.toolCalls[0].arguments == #"{"location": "Paris \"centre\"", "days": 2}"#)
            // The name arrives before any argument text.
            let firstCall = deltas.firstIndex { if case .toolCall = $0 { true } else { false } }!
            let firstArgs = deltas.firstIndex { if case .toolArguments = $0 { true } else { false } }!
            #expect(firstCall < firstArgs)
        }
    }

    @Test func recoversWhenThinkCloseIsMissingBeforeTools() {
        let out = parse("thinking\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>")
        #expect(out.reasoning == "thinking" && out.content == "" && out.toolCalls.count == 1 && out.toolCalls[0].arguments == "{}")
    }

    @Test func malformedOutputIsNeverLostOrCrashing() {
        // Unterminated tags, bad JSON, stray markup: defined results, no traps.
        #expect(parse("r</think>text\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">Par").toolCalls[0].arguments == #"{"a": "Par"#)
        #expect(parse("r</think>x<｜DSML｜tool_calls><｜DSML｜invoke name=\"f\"><｜DSML｜parameter name=\"n\" string=\"false\">not json</｜DSML｜parameter></｜DSML｜invoke></｜DSML｜tool_calls>").toolCalls[0].arguments == #"{"n": not json}"#)
        #expect(parse("answer <think> x</think> y", thinking: false).content == "answer <think> x y")
        #expect(parse("no tools <｜DSML｜tool_calls>", thinking: false, tools: false).content == "no tools <｜DSML｜tool_calls>")
        #expect(parse("r</think>garbage <｜DSML｜tool_calls> junk").content == "garbage ")
    }

    /// One row of Tests/Fixtures/chat/parse_cases.jsonl: a stream, how it was fed, and what
    /// deepseek-recipe's stream parser gave for it.
    struct RecipeCase: Decodable {
        struct Input: Decodable { let text: String, thinking: Bool, tools: Bool, chunk: Int }
        struct Call: Decodable { let name: String, arguments: String }
        struct Expected: Decodable {
            let reasoning_content: String?, content: String?, tool_calls: [Call]
        }
        let group: String, input: Input, expected: Expected
    }

    /// deepseek-recipe's answers for the hand-picked streams of `tools/parse_goldens.py cases`
    /// (each stream at every chunk size 1–9 and all at once, tools requested), by group.
    static func recipeCases(_ group: String) throws -> [RecipeCase] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/chat/parse_cases.jsonl")
        return try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(RecipeCase.self, from: Data($0.utf8)) }
            .filter { $0.group == group }
    }

    /// Every stream of `group` (`count` of them) parses to exactly what deepseek-recipe gave.
    func expectRecipe(group: String, count: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let rows = try Self.recipeCases(group)
        #expect(rows.count == count * 10, "\(group): \(rows.count) rows", sourceLocation: sourceLocation)
        for row in rows {
            let (input, expected) = (row.input, row.expected)
            let got = parse(input.text, thinking: input.thinking, tools: input.tools, chunk: input.chunk)
            var want = ParsedOutput(thinking: input.thinking)
            want.reasoning = expected.reasoning_content
            want.content = expected.content
            want.toolCalls = expected.tool_calls.map { (name: $0.name, arguments: $0.arguments) }
            #expect(got == want, "chunk \(input.chunk): \(input.text.debugDescription) -> \(got.reasoning.debugDescription) \(got.content.debugDescription) \(got.toolCalls)", sourceLocation: sourceLocation)
        }
    }

    /// Regression: a stream that stopped inside a tool call had its arguments closed (`{"n2": 1}`,
    /// `{}`); the recipe leaves them as streamed so far, closing a string value only once
    /// `</｜DSML｜` has arrived, and a half-written block opener never reaches the content.
    @Test func unterminatedToolCallKeepsArgumentsAsStreamed() throws {
        try expectRecipe(group: "unterminated", count: 9)
    }

    /// Regression: newlines before `</think>` / the tool block were all dropped, or kept, depending
    /// on where a chunk ended. The recipe keeps exactly the newline that breaks a held-back partial
    /// marker (`</thi` + `\n`) unless the other marker's newline rule drops it; `<｜DSML｜` is
    /// scanned for before `</think>`, so newlines before a stray `</think>` in the content are not
    /// "newlines before the tool block".
    @Test func newlineAfterPartialMarkerFollowsTheRecipe() throws {
        try expectRecipe(group: "partial-marker-newline", count: 10)
    }

    /// Leading newlines are dropped from the input of each stage (so a stray `</think>` in the
    /// content, which is removed, ends that phase), not from the output.
    @Test func leadingNewlinesAreDroppedFromTheInput() throws {
        try expectRecipe(group: "leading-newlines", count: 3)
    }

    /// Model deviations the recipe accepts: an invoke without the `tool_calls` wrapper, text
    /// between tags; an unknown DSML tag or a bad `string=` attribute ends the block.
    @Test func lenientToolBlockAsTheRecipe() throws {
        try expectRecipe(group: "lenient", count: 4)
    }

    /// One push releases one delta per kind, and a call's name comes before its arguments.
    @Test func pushMergesDeltasAndNamesFirst() {
        var p = OutputParser(thinking: true, parseToolCalls: true)
        #expect(p.push("Let me see") == [.reasoning("Let me see")])
        #expect(p.push("</think>Sure.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">x\"") == [
            .content("Sure."), .toolCall(index: 0, name: "f"), .toolArguments(index: 0, #"{"a": "x\""#),
        ])
        #expect(p.finish() == [])
        #expect(p.sawToolCalls)
    }

    /// The parsed assistant turn rendered back reproduces the generated text exactly.
    @Test func replayReproducesTheGeneration() {
        let generations = [
            "Let me think.</think>The answer is 4.",
            "r</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"location\" string=\"true\">Paris</｜DSML｜parameter>\n<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
            "</think>Calling.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"o\" string=\"false\">{\"a\": [1, \"x\"], \"b\": null}</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
        ]
        for gen in generations {
            let p = parse(gen)
            var msg = ChatMessage(role: .assistant, content: p.content ?? "")
            msg.reasoning = p.reasoning
            msg.toolCalls = p.toolCalls.enumerated().map { ChatToolCall(id: "call_\($0.offset)", name: $0.element.name, arguments: $0.element.arguments) }
            #expect(PromptRenderer.assistantBody(msg, keepReasoning: true) == gen)
        }
    }
}
