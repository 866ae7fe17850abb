// ResponsesTests.swift: the Responses encoder's event stream (order, sequence numbers, items
// that never mix reasoning, text and tool-call deltas) and the response store's bounds.
@testable import Engine
import Foundation
import OpenAIAPI
@testable import Server
import Testing

@Suite struct ResponsesTests {
    static let toolScript = [
        "Let me ", "check.</think>", "Sure.", "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" ",
        "string=\"true\">x</｜DSML｜parameter>\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"g\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
    ]

    /// The encoder fed `pieces` (streaming or not); returns its SSE events and final response.
    func run(_ pieces: [String], parallel: Bool = true, reason: FinishReason = .stop) throws -> (events: [JSONValue], response: JSONValue) {
        var e = ResponsesEncoder(id: "resp_test", created: 1, echo: [("model", .s("m"))], thinking: true, parseToolCalls: true, parallelToolCalls: parallel)
        var sse = e.streamOpening(usage: GenerationUsage(promptTokens: 3))
        for p in pieces { sse += e.text(p, token: SampledToken(token: 5, logprob: 0, top: []), choice: 0, streaming: true) }
        sse += e.finish(choice: 0, reason: reason, stopString: nil, streaming: true, timings: nil).events
        let usage = GenerationUsage(promptTokens: 3, cachedTokens: 1, completionTokens: pieces.count)
        sse += e.streamClosing(usage: usage, timings: .null)
        let events = try sse.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { block -> JSONValue in
            let lines = block.split(separator: "\n")
            let data = try JSONValue.parse(String(lines[1].dropFirst(6)))
            #expect(lines[0] == "event: \(data["type"]!.stringValue!)")
            return data
        }
        return (events, e.response(usage: usage, timings: .null))
    }

    @Test func streamOpensAndClosesEveryItemInOrderWithSequenceNumbers() throws {
        let (events, response) = try run(Self.toolScript)
        let types = events.map { $0["type"]!.stringValue! }
        #expect(types.first == "response.created" && types[1] == "response.in_progress" && types.last == "response.completed")
        #expect(events.map { $0["sequence_number"]!.intValue! } == Array(0..<events.count))
        var open: String?
        for ev in events {
            switch ev["type"]!.stringValue! {
            case "response.output_item.added":
                #expect(open == nil)
                open = ev["item"]?["id"]?.stringValue
            case "response.output_item.done":
                #expect(open == ev["item"]?["id"]?.stringValue)
                open = nil
            case let t where t.hasSuffix(".delta"):
                #expect(ev["item_id"]?.stringValue == open)
                #expect(!(ev["delta"]!.stringValue!.contains("DSML")) && !(ev["delta"]!.stringValue!.contains("think>")))
            default: break
            }
        }
        let output = response["output"]!.arrayValue!
        #expect(output.map { $0["type"]!.stringValue! } == ["reasoning", "message", "function_call", "function_call"])
        #expect(output[0]["content"]?.arrayValue?.first?["text"]?.stringValue == "Let me check.")
        #expect(output[1]["content"]?.arrayValue?.first?["text"]?.stringValue == "Sure.")
        #expect(output[2]["arguments"]?.stringValue == #"{"a": "x"}"# && output[3]["name"]?.stringValue == "g")
        #expect(response["usage"]?["output_tokens_details"]?["reasoning_tokens"]?.intValue == 2)
        #expect(response["usage"]?["input_tokens_details"]?["cached_tokens"]?.intValue == 1)
        // The completed event carries the same response.
        #expect(events.last!["response"]!["output"] == response["output"])
    }

    /// Regression: two calls parsed from one piece of text got the same call_id.
    @Test func callsParsedTogetherGetTheirOwnIDs() throws {
        let (_, response) = try run([Self.toolScript.joined()])
        let ids = response["output"]!.arrayValue!.compactMap { $0["call_id"]?.stringValue }
        #expect(ids.count == 2 && Set(ids).count == 2 && ids.allSatisfy { $0.hasPrefix("call_") })
    }

    @Test func parallelToolCallsOffKeepsTheFirstCall() throws {
        let (events, response) = try run(Self.toolScript, parallel: false)
        #expect(response["output"]!.arrayValue!.filter { $0["type"]?.stringValue == "function_call" }.count == 1)
        #expect(events.filter { $0["type"]?.stringValue == "response.function_call_arguments.done" }.count == 1)
    }

    @Test func lengthEndsIncomplete() throws {
        let (events, response) = try run(["a</think>", "partial answer"], reason: .length)
        #expect(events.last?["type"]?.stringValue == "response.incomplete")
        #expect(response["status"]?.stringValue == "incomplete" && response["incomplete_details"]?["reason"]?.stringValue == "max_output_tokens")
        #expect(response["output"]?.arrayValue?.map { $0["status"]!.stringValue! } == ["completed", "incomplete"])
        let (_, inReasoning) = try run(["still thinking"], reason: .length)
        #expect(inReasoning["output"]?.arrayValue?.map { $0["status"]!.stringValue! } == ["incomplete"])
    }

    @Test func storeKeepsTheMostRecentlyUsedWithinItsBounds() {
        let store = ResponseStore(maxCount: 3, maxBytes: 10_000)
        for i in 0..<5 { store.put(id: "r\(i)", response: .object([("id", .s("r\(i)"))]), history: []) }
        #expect(store.count == 3 && store.get("r0") == nil && store.get("r1") == nil)
        _ = store.get("r2")  // now the most recent: r3 goes next
        store.put(id: "r5", response: .s("x"), history: [])
        #expect(store.get("r3") == nil && store.get("r2") != nil && store.get("r4") != nil)
        #expect(store.delete("r2") && !store.delete("r2") && store.count == 2)
        // Bytes: big entries push out old ones; one bigger than the bound is not kept.
        store.put(id: "big", response: .s(String(repeating: "x", count: 6_000)), history: [])
        store.put(id: "big2", response: .s(String(repeating: "y", count: 6_000)), history: [])
        #expect(store.get("big") == nil && store.get("big2") != nil && store.totalBytes <= 10_000)
        store.put(id: "huge", response: .s(String(repeating: "z", count: 20_000)), history: [])
        #expect(store.get("huge") == nil)
        for i in 0..<10_000 { store.put(id: "n\(i)", response: .n(i), history: [.n(i)]) }
        #expect(store.count == 3 && store.totalBytes <= 10_000 && store.get("n9999") != nil)
    }
}
