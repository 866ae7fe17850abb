// OperationsTests.swift: admission under contention, request records and their timings,
// structured log lines, request ids and the "no tool call" constraint, without a network.
import Foundation
import Logging
@testable import Server
import OpenAIAPI
import Synchronization
import Testing
import Tokenization

@Suite struct OperationsTests {
    /// Regression: `admit()` read the in-flight count and incremented it later, so a burst of
    /// concurrent requests could all pass the check and overshoot the limit.
    @Test func admissionNeverExceedsTheLimitUnderContention() async {
        let metrics = ServerMetrics()
        let limit = 7
        let admitted = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<2000 { group.addTask { metrics.tryAdmit(limit: limit) } }
            var n = 0
            for await ok in group where ok { n += 1 }
            return n
        }
        #expect(admitted == limit)
        #expect(metrics.inFlightCount == limit)
        metrics.release()
        #expect(metrics.tryAdmit(limit: limit))
        #expect(!metrics.tryAdmit(limit: limit))
    }

    @Test func forbiddenTextIsCaughtAcrossChunkBoundaries() {
        let f = ForbiddenBytes("<｜DSML｜tool_calls>")
        func contains(_ chunks: [String]) -> Bool {
            var m = 0
            for c in chunks {
                for b in c.utf8 {
                    m = f.next(m, b)
                    if m == f.pattern.count { return true }
                }
            }
            return false
        }
        #expect(contains(["x\n\n<｜DS", "ML｜tool_", "calls>"]))
        #expect(contains(["<<｜DSML｜<｜DSML｜tool_calls>"]))  // restarts inside a partial match
        #expect(!contains(["<｜DSML｜invoke", " tool_calls>", "<｜DSML｜tool_call"]))
        // A pattern with a self-overlap ("aab" in "aaab") needs the failure table.
        let g = ForbiddenBytes("aab")
        var m = 0
        var hit = false
        for b in "aaab".utf8 { m = g.next(m, b); if m == 3 { hit = true } }
        #expect(hit)
    }

    @Test func noToolCallConstraintRejectsOnlyTheTokenThatOpensTheBlock() throws {
        let tokenizer = try #require(v4Tokenizer())
        let c = ConstraintFactory.noToolCalls(tokenizer, thinking: false).make()
        let block = tokenizer.encode("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">")
        var rejectedAt: Int?
        for (i, t) in block.enumerated() {
            guard c.canAccept(t) else { rejectedAt = i; break }
            c.accept(t)
        }
        let opened = tokenizer.decode(Array(block[..<(rejectedAt ?? block.count)]))
        #expect(rejectedAt != nil && !opened.contains("<｜DSML｜tool_calls>"))
        #expect(c.canFinish)
        // Ordinary text, and DSML invokes outside a block, stay allowed.
        let d = ConstraintFactory.noToolCalls(tokenizer, thinking: false).make()
        for t in tokenizer.encode("Sure: tool_calls are <b>fine</b> to mention.") {
            #expect(d.canAccept(t))
            d.accept(t)
        }
    }

    @Test func timingsCountOnlyUncachedPromptTokensAndGeneratedTokens() throws {
        let r = RequestRecord(requestID: "r1", endpoint: "chat_completions")
        r.submitted()
        r.started(promptTokens: 40, cachedTokens: 16)
        for _ in 0..<5 {
            Thread.sleep(forTimeInterval: 0.005)  // so the rounded milliseconds stay precise
            r.token()
        }
        let t = try #require(r.timingsJSON.objectValue)
        let d = Dictionary(t, uniquingKeysWith: { a, _ in a })
        #expect(d["prompt_n"]?.intValue == 24 && d["cache_n"]?.intValue == 16 && d["predicted_n"]?.intValue == 5)
        let ms = try #require(d["predicted_ms"]?.doubleValue), rate = try #require(d["predicted_per_second"]?.doubleValue)
        #expect(ms >= 15)  // first to last of five tokens 5 ms apart
        #expect(abs(rate - 5000 / ms) <= rate * 0.01)
        #expect(r.complete().first && !r.complete().first)
        #expect(!r.clientGone())  // completed requests are not counted as cancelled
    }

    @Test func logLinesAreValidJSONWithTypedFieldsOrQuotedLogfmt() throws {
        let lines = Mutex<[String]>([])
        let sink: @Sendable (String) -> Void = { l in lines.withLock { $0.append(l) } }
        let json = Logger(label: "t") { StructuredLogHandler(label: $0, level: .info, format: .json, sink: sink) }
        let r = RequestRecord(requestID: "id \"q\"", endpoint: "completions")
        r.started(promptTokens: 3, cachedTokens: 0)
        r.finished("length")
        json.info("request", metadata: r.logMetadata(r.snapshot))
        json.debug("dropped below the level")
        let logfmt = Logger(label: "t") { StructuredLogHandler(label: $0, level: .info, format: .logfmt, sink: sink) }
        logfmt.info("request", metadata: r.logMetadata(r.snapshot))
        let out = lines.withLock { $0 }
        #expect(out.count == 2)
        let v = try JSONValue.parse(String(out[0].dropLast()))
        #expect(v["msg"]?.stringValue == "request" && v["request_id"]?.stringValue == "id \"q\"")
        #expect(v["prompt_tokens"]?.intValue == 3 && v["client_cancelled"]?.boolValue == false && v["finish_reason"]?.stringValue == "length")
        #expect(v["prefill_ms"]?.doubleValue != nil)
        #expect(out[1].contains(#"request_id="id \"q\"""#) && out[1].contains(" prompt_tokens=3 ") && out[1].hasSuffix("\n"))
    }

    @Test func clientRequestIDsAreEchoedOnlyWhenSane() {
        func id(_ v: String) -> String? { RequestMiddleware.clientRequestID([RequestMiddleware.requestIDField: v]) }
        #expect(id("abc-123_X") == "abc-123_X")
        #expect(id(String(repeating: "a", count: 129)) == nil)
        #expect(id("has space") == nil)
        #expect(RequestMiddleware.clientRequestID([:]) == nil)
    }
}
