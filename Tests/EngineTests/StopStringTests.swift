// StopStringTests.swift: stop strings and stop token ids through the engine, on a fake model
// whose tokens are detokenized as fixed-width text ("t07.") so a stop string can be made to
// span a token boundary and never fit inside one token.
import Engine
import Testing

@Suite struct StopStringTests {
    static func text(_ tokens: [Int]) -> String { tokens.map { "t" + ($0 < 10 ? "0" : "") + "\($0)." }.joined() }

    func probe(_ prompt: [Int], _ count: Int) throws -> [Int] {
        let core = EngineCore(model: FakeModel(), configuration: EngineConfiguration())
        let id = try core.add(prompt: prompt, parameters: greedy(count))
        return drain(core).tokens[id]![0]!
    }

    @Test func stopStringSpanningTokensEndsAtTheTokenThatCompletesIt() throws {
        let prompt = [3, 1, 4, 1, 5]
        let free = try probe(prompt, 12)
        // The last two characters of token 3 and the first two of token 4 ("N." + "tM"): no
        // single token's text ("tNN.") can contain it.
        let t3 = Self.text([free[3]]), t4 = Self.text([free[4]])
        let stop = String(t3.suffix(2)) + String(t4.prefix(2))
        // The first k whose text contains the stop string (4 unless it occurs earlier).
        let k = (0..<free.count).first { Self.text(Array(free[0...$0])).contains(stop) }!
        var p = greedy(12)
        p.stop = ["never-matches", stop]
        let core = EngineCore(model: FakeModel(), configuration: EngineConfiguration(), detokenize: Self.text)
        let id = try core.add(prompt: prompt, parameters: p)
        let (tokens, events) = drain(core)
        #expect(tokens[id]![0]! == Array(free[0...k]))
        #expect(events[id]!.last == .finished(choice: 0, reason: .stop, stopString: stop))
        // Without a detokenizer the engine cannot see text: the request runs to max_tokens.
        let blind = EngineCore(model: FakeModel(), configuration: EngineConfiguration())
        let bid = try blind.add(prompt: prompt, parameters: p)
        #expect(drain(blind).tokens[bid]![0]! == free)
    }

    @Test func stopStringsApplyPerChoice() throws {
        var p = greedy(10, n: 3)
        p.temperature = 1
        p.seed = 9
        let free = EngineCore(model: FakeModel(), configuration: EngineConfiguration())
        let fid = try free.add(prompt: [2, 7, 1, 8], parameters: p)
        let all = drain(free).tokens[fid]!
        // Stop on choice 1's third token's text: each choice stops at its own first match.
        let stop = Self.text([all[1]![2]])
        p.stop = [stop]
        let core = EngineCore(model: FakeModel(), configuration: EngineConfiguration(), detokenize: Self.text)
        let id = try core.add(prompt: [2, 7, 1, 8], parameters: p)
        let (tokens, events) = drain(core)
        for c in 0..<3 {
            let full = all[c]!
            let k = (0..<full.count).first { Self.text(Array(full[0...$0])).contains(stop) }
            #expect(tokens[id]![c]! == (k.map { Array(full[0...$0]) } ?? full), "choice \(c)")
            let reason: FinishReason = k == nil ? .length : .stop
            #expect(events[id]!.contains(.finished(choice: c, reason: reason, stopString: k == nil ? nil : stop)))
        }
        #expect(tokens[id]![1]!.count <= 3)
    }

    /// Regression: the engine decoded the whole generated text again after every token to
    /// look for stop strings, so a choice of N tokens decoded N(N+1)/2 tokens.
    @Test func stopStringsDecodeAWindowNotTheWholeOutput() throws {
        final class Counter { var tokens = 0 }
        let decoded = Counter()
        let core = EngineCore(model: FakeModel(), configuration: EngineConfiguration(), detokenize: { tokens in
            decoded.tokens += tokens.count
            return Self.text(tokens)
        })
        var p = greedy(400)
        p.stop = ["never-matches"]  // 13 bytes: about four tokens of text
        let id = try core.add(prompt: [3, 1, 4], parameters: p)
        let (tokens, _) = drain(core)
        #expect(tokens[id]![0]!.count == 400)
        // Quadratic decoding would be 80,200 tokens; a window of a few tokens is linear.
        #expect(decoded.tokens <= 400 * 40)
    }

    @Test func matcherFindsAStopInACharacterSplitAcrossTokens() {
        // Tokens are single bytes: "é" is two tokens, and the stop "xxaé" spans five.
        let bytes: [UInt8] = Array("xxxxxxxxxxxxxxxxaébb".utf8)
        let decode: ([Int]) -> String = { ids in String(decoding: ids.map { bytes[$0] }, as: UTF8.self) }
        var m = StopMatcher()
        var found: (Int, String)?
        for k in bytes.indices {
            if let s = m.match(["xxaé", "zzz"], in: Array(0...k), detokenize: decode) { found = (k, s); break }
        }
        #expect(found?.0 == 18 && found?.1 == "xxaé")  // the token that completes "é"
    }

    @Test func stopTokenIdEndsTheChoiceAndIsTheLastToken() throws {
        let free = try probe([9, 9, 9], 8)
        var p = greedy(8)
        p.stopTokenIds = [free[5], 49]
        let core = EngineCore(model: FakeModel(), configuration: EngineConfiguration())
        let id = try core.add(prompt: [9, 9, 9], parameters: p)
        let (tokens, events) = drain(core)
        let k = free.firstIndex { p.stopTokenIds.contains($0) }!
        #expect(tokens[id]![0]! == Array(free[0...k]))
        #expect(events[id]!.last == .finished(choice: 0, reason: .stop, stopString: nil))
    }

    @Test func badStopValuesAreRejectedBeforeWork() throws {
        let model = FakeModel()
        let core = EngineCore(model: model, configuration: EngineConfiguration())
        var p = greedy(4)
        p.stopTokenIds = [50]
        #expect(throws: EngineError.invalidParameter(name: "stop_token_ids", message: "token id 50 is outside the vocabulary (0..<50)")) {
            try core.add(prompt: [1], parameters: p)
        }
        p.stopTokenIds = []
        p.stop = Array(repeating: "x", count: 17)
        #expect(throws: EngineError.invalidParameter(name: "stop", message: "at most 16 stop strings, got 17")) {
            try core.add(prompt: [1], parameters: p)
        }
        #expect(!core.hasWork && model.forwardCalls == 0)
    }
}
