// ConstraintTests.swift: the JSON automaton against an independent JSON parser (Foundation's
// JSONSerialization), and constrained sampling whose outputs that parser judges.
import Engine
import Foundation
@testable import Server
import OpenAIAPI
import Testing
import Tokenization

/// The independent judge: Foundation's JSONSerialization, on a top-level object written
/// without leading whitespace (what `response_format` asks of the model).
func isJSONObject(_ s: String) -> Bool {
    guard s.hasPrefix("{"), let data = s.data(using: .utf8) else { return false }
    return (try? JSONSerialization.jsonObject(with: data)) is [String: Any]
}

func feedAll(_ s: String) -> JSONAutomaton? {
    var a = JSONAutomaton()
    for b in s.utf8 where !a.feed(b) { return nil }
    return a
}

@Suite struct ConstraintTests {
    @Test func automatonAcceptsExactlyJSONObjects() {
        let texts = [
            #"{}"#, #"{"a": 1}"#, #"{"a": [1, 2.5e-3, -0, true, null, {"b": "x\"\u00e9"}], "c": []}"#, "{\n \"k\" : \"v\"}",
            #"[1]"#, #"{"a" 1}"#, #"{"a": 01}"#, #"{"a": tru}"#, #"{,}"#, #"{"a": 1}}"#, #"{"a": "\x"}"#, "  {}",
            #"{"a": 1e5, "b": -0.5E-2, "c": "\ud83d\ude00"}"#, #"{"a": .5}"#, #"{"a": 1.}"#, #"{"a": "tab\there"}"#, #"{"a": nul}"#,
        ]
        for text in texts {
            let a = feedAll(text)
            #expect((a?.isComplete == true) == isJSONObject(text), "\(text)")
        }
        // JSONSerialization accepts a trailing comma; RFC 8259 (and the automaton) do not.
        #expect(feedAll(#"{"a": [1,]}"#) == nil)
        // Prefixes of valid JSON are alive but not complete.
        let p = feedAll(#"{"a": [1, 2"#)
        #expect(p != nil && !p!.isComplete)
    }

    @Test func constrainedSamplingOnlyProducesValidJSON() throws {
        let tokenizer = try #require(v4Tokenizer())
        let factory = ConstraintFactory.json(tokenizer, thinking: false)
        var rng = SeededGenerator(seed: 9)
        let closers = ["}", "]", "\"", "0", "e"].compactMap { tokenizer.id(of: $0) }
        for trial in 0..<3 {
            let c = factory.make()
            var out: [Int] = []
            var p = SamplingParameters()
            p.temperature = trial == 0 ? 0 : 1
            var ended = false
            for _ in 0..<400 {
                // Random logits; after 30 tokens, closing tokens win so every run ends.
                // Most tokens negligible; a random 3,000 in play (keeps the debug build fast).
                var logits = [Float](repeating: -100, count: tokenizer.vocabularySize)
                for _ in 0..<3000 { logits[Int(rng.next() % UInt64(tokenizer.vocabularySize))] = Float(rng.unit() * 8) }
                if out.count > 30 { for t in closers { logits[t] += 50 }; logits[1] += 200 }
                let s = Sampler.sample(logits: logits, parameters: p, seen: [], generatedCounts: [:], rng: &rng, constraint: c, eos: [1])
                if s.token == 1 { ended = true; break }
                c.accept(s.token)
                out.append(s.token)
            }
            // The constraint let the run end (end-of-sequence), so the text must be a whole
            // JSON object by JSONSerialization's judgement, not the automaton's.
            let text = tokenizer.decode(out)
            #expect(ended, "trial \(trial) never ended: \(text.debugDescription)")
            #expect(isJSONObject(text), "trial \(trial): \(text.debugDescription)")
        }
    }

    @Test func toolChoiceForcesTheBlockAfterReasoning() throws {
        let tokenizer = try #require(v4Tokenizer())
        let c = ConstraintFactory.toolCall(tokenizer, thinking: true, function: "get_weather").make()
        #expect(c.canAccept(tokenizer.encode("anything")[0]))  // reasoning is free
        c.accept(try #require(tokenizer.id(of: "</think>")))
        #expect(!c.canAccept(tokenizer.encode("Sure")[0]))
        #expect(!c.canFinish)
        for t in tokenizer.encode("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n") {
            #expect(c.canAccept(t))
            c.accept(t)
        }
        #expect(c.canFinish)
    }
}

func v4Tokenizer() -> BPETokenizer? {
    let env = ProcessInfo.processInfo.environment
    let dirs = [env["DSV4_HOME"].map { $0 + "/models/dsv4-tiny" }, NSHomeDirectory() + "/.cache/dsv4/models/dsv4-tiny"].compactMap { $0 }
    return dirs.lazy.compactMap { try? BPETokenizer(path: $0) }.first
}

@Suite struct SchemaConstraintTests {
    let schema = try! SchemaNode.parse(try! JSONValue.parse(#"""
        {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"},
         "color": {"enum": ["red", "green"]}, "tags": {"type": "array", "items": {"type": "string"}},
         "inner": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}},
         "required": ["ok", "n", "color"]}
        """#))

    func run(_ s: String) -> JSONAutomaton? {
        var a = JSONAutomaton(schema: schema)
        for b in s.utf8 where !a.feed(b) { return nil }
        return a
    }

    @Test func schemaIsEnforced() {
        for good in [#"{"ok": true, "n": 3, "color": "red"}"#, #"{"color": "green", "n": -12, "ok": false, "tags": ["a", "b"], "inner": {"x": 1.5}}"#] {
            #expect(isJSONObject(good) && run(good)?.isComplete == true, "\(good)")
        }
        for bad in [
            #"{"ok": 1, "n": 3, "color": "red"}"#,  // wrong type
            #"{"ok": true, "n": 3.5, "color": "red"}"#,  // integer
            #"{"ok": true, "n": 3, "color": "blue"}"#,  // enum
            #"{"ok": true, "n": 3}"#,  // missing required
            #"{"ok": true, "n": 3, "color": "red", "extra": 1}"#,  // unknown key
            #"{"ok": true, "ok": true, "n": 3, "color": "red"}"#,  // duplicate key
            #"{"ok": true, "n": 3, "color": "red", "tags": [1]}"#,  // items
            #"{"ok": true, "n": 3, "color": "red", "inner": {}}"#,  // nested required
        ] {
            #expect(run(bad)?.isComplete != true, "\(bad)")
        }
    }

    @Test func unsupportedKeywordsAreRejectedClearly() {
        #expect(throws: APIError.self) { try SchemaNode.parse(try JSONValue.parse(#"{"anyOf": [{"type": "string"}]}"#)) }
    }
}
