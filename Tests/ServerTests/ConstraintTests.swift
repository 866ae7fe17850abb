// ConstraintTests.swift: the JSON automaton against the JSON parser, and constrained
// sampling that can only produce what the constraint allows.
import Engine
import Foundation
@testable import Server
import OpenAIAPI
import Testing
import Tokenization

func feedAll(_ s: String) -> JSONAutomaton? {
    var a = JSONAutomaton()
    for b in s.utf8 where !a.feed(b) { return nil }
    return a
}

@Suite struct ConstraintTests {
    @Test func automatonAcceptsExactlyJSONObjects() {
        for good in [#"{}"#, #"{"a": 1}"#, #"{"a": [1, 2.5e-3, -0, true, null, {"b": "x\"\u00e9"}], "c": []}"#, "{\n \"k\" : \"v\"}"] {
            let a = feedAll(good)
            #expect(a != nil && a!.isComplete, "\(good)")
        }
        for bad in [#"[1]"#, #"{"a" 1}"#, #"{"a": 01}"#, #"{"a": [1,]}"#, #"{"a": tru}"#, #"{,}"#, #"{"a": 1}}"#, #"{"a": "\x"}"#, "  {}"] {
            let a = feedAll(bad)
            #expect(a == nil || !a!.isComplete, "\(bad)")
        }
        // Prefixes of valid JSON are alive but not complete.
        let p = feedAll(#"{"a": [1, 2"#)
        #expect(p != nil && !p!.isComplete)
    }

    @Test func constrainedSamplingOnlyProducesValidJSON() throws {
        let tokenizer = try #require(v4Tokenizer())
        let factory = ConstraintFactory.json(tokenizer, thinking: false)
        var rng = SeededGenerator(seed: 9)
        for trial in 0..<3 {
            let c = factory.make()
            var out: [Int] = []
            var p = SamplingParameters()
            p.temperature = trial == 0 ? 0 : 1
            for _ in 0..<60 {
                // Random logits that favour closing braces late, so some runs complete.
                // Most tokens negligible; a random 3,000 in play (keeps the debug build fast).
                var logits = [Float](repeating: -100, count: tokenizer.vocabularySize)
                for _ in 0..<3000 { logits[Int(rng.next() % UInt64(tokenizer.vocabularySize))] = Float(rng.unit() * 8) }
                if out.count > 30, let close = tokenizer.id(of: "}") { logits[close] += 20 }
                let s = Sampler.sample(logits: logits, parameters: p, seen: [], generatedCounts: [:], rng: &rng, constraint: c, eos: [1])
                if s.token == 1 { break }
                c.accept(s.token)
                out.append(s.token)
            }
            let text = tokenizer.decode(out)
            #expect(feedAll(text) != nil, "trial \(trial): \(text.debugDescription)")
            #expect(text.hasPrefix("{"))
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
            #expect(run(good)?.isComplete == true, "\(good)")
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
