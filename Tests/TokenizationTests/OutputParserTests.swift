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

    typealias Case = (text: String, thinking: Bool, reasoning: String?, content: String, calls: [(String, String)])

    /// Each case at every chunk size from 1 to 9 and all at once; the expected values are
    /// deepseek-recipe's (tools request).
    func expectRecipe(_ cases: [Case], sourceLocation: SourceLocation = #_sourceLocation) {
        for c in cases {
            for chunk in Array(1...9) + [Int.max] {
                let got = parse(c.text, thinking: c.thinking, chunk: chunk)
                var want = ParsedOutput(thinking: c.thinking)
                want.reasoning = c.reasoning
                want.content = c.content
                want.toolCalls = c.calls.map { (name: $0.0, arguments: $0.1) }
                #expect(got == want, "chunk \(chunk): \(c.text.debugDescription) -> \(got.reasoning.debugDescription) \(got.content.debugDescription) \(got.toolCalls)", sourceLocation: sourceLocation)
            }
        }
    }

    /// Regression: a stream that stopped inside a tool call had its arguments closed (`{"n2": 1}`,
    /// `{}`); the recipe leaves them as streamed so far, closing a string value only once
    /// `</｜DSML｜` has arrived, and a half-written block opener never reaches the content.
    @Test func unterminatedToolCallKeepsArgumentsAsStreamed() {
        expectRecipe([
        ("r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n<｜DSML｜parameter name=\"n2\" string=\"false\">1", true, "r", "c", [("x", "{\"n2\": 1")]),
        ("r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n", true, "r", "c", [("x", "")]),
        ("r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n<｜DSML｜parameter name=\"p\" string=\"true\">ab</｜DSML｜", true, "r", "c", [("x", "{\"p\": \"ab\"")]),
        ("r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n<｜DSML｜parameter name=\"p\" string=\"true\">ab</｜DSML", true, "r", "c", [("x", "{\"p\": \"ab</｜DSML")]),
        ("r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n<｜DSML｜parameter name=\"p\" string=\"true\">ab</｜DSML｜parameter>\n</｜DSML｜", true, "r", "c", [("x", "{\"p\": \"ab\"}")]),
        ("r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n<｜DSML｜parameter name=\"p", true, "r", "c", [("x", "{\"p")]),
        ("r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n<｜DSML｜parameter name=\"p\" ", true, "r", "c", [("x", "{\"p\": ")]),
        ("r</think>c\n\n<｜DSML｜tool_ca", true, "r", "c", []),
        ("r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_w", true, "r", "c", []),
        ])
    }

    /// Regression: newlines before `</think>` / the tool block were all dropped, or kept, depending
    /// on where a chunk ended. The recipe keeps exactly the newline that breaks a held-back partial
    /// marker (`</thi` + `\n`) unless the other marker's newline rule drops it.
    @Test func newlineAfterPartialMarkerFollowsTheRecipe() {
        expectRecipe([
        ("r</thi\n\n</think>c", true, "r</thi\n", "c", []),
        ("r</thi\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>", true, "r</thi", "", [("f", "{}")]),
        ("r<｜DSM\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>", true, "r<｜DSM\n", "", [("f", "{}")]),
        ("r<｜DSM\n</think>c", true, "r<｜DSM", "c", []),
        ("r</think>c</thi\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>", true, "r", "c</thi", [("f", "{}")]),
        ("c</thi\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>", false, nil, "c</thi", [("f", "{}")]),
        ("r</think>c\n\n", true, "r", "c\n\n", []),
        ("r</thi\n", true, "r</thi\n", "", []),
        // `<｜DSML｜` is scanned for before `</think>`: newlines before a stray `</think>` in the
        // content are not "newlines before the tool block".
        ("a\n\n</think><｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>", false, nil, "a\n\n", [("f", "{}")]),
        ("r</think>a\n</think>\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>", true, "r", "a\n", [("f", "{}")]),
        ])
    }

    /// Leading newlines are dropped from the input of each stage (so a stray `</think>` in the
    /// content, which is removed, ends that phase), not from the output.
    @Test func leadingNewlinesAreDroppedFromTheInput() {
        expectRecipe([
        ("r</think>\n\n</think>\n\nb", true, "r", "\n\nb", []),
        ("\n\nr\n\n</think>\n\nc", true, "r", "c", []),
        ("\n\na\n</think>\nb", false, nil, "a\n\nb", []),
        ])
    }

    /// Model deviations the recipe accepts: an invoke without the `tool_calls` wrapper, text
    /// between tags; an unknown DSML tag or a bad `string=` attribute ends the block.
    @Test func lenientToolBlockAsTheRecipe() {
        expectRecipe([
        ("r<｜DSML｜invoke name=\"x\">\n</｜DSML｜invoke>", true, "r", "", [("x", "{}")]),
        ("r</think>c<｜DSML｜tool_calls><｜DSML｜invoke name=\"x\">junk<｜DSML｜parameter name=\"a\" string=\"true\">1</｜DSML｜parameter>junk</｜DSML｜invoke>x<｜DSML｜invoke name=\"y\"></｜DSML｜invoke></｜DSML｜tool_calls>tail", true, "r", "c", [("x", "{\"a\": \"1\"}"), ("y", "{}")]),
        ("r</think>c<｜DSML｜foo>bar", true, "r", "c", []),
        ("r</think>c\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n<｜DSML｜parameter name=\"p0\" string=\"maybe\">1</｜DSML｜parameter></｜DSML｜invoke></｜DSML｜tool_calls>", true, "r", "c", [("x", "{\"p0\": ")]),
        ])
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
