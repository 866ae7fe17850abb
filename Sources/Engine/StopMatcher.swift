// StopMatcher.swift: finds a choice's stop strings in its generated text incrementally.
// Each new token re-decodes only a short window of recent tokens (long enough to hold any
// stop string that ends in the new token), not the whole output, so a choice of N tokens
// costs O(N · longest stop string) instead of O(N²).

/// The stop-string state of one choice.
///
/// A stop string first found at token t ends inside t's text (otherwise it would have been
/// found earlier), so it starts at most `longest − 1` bytes before t's text. After each
/// check the window drops its first token while the tokens between it and the newest one
/// still decode to `longest + slack` bytes: the next check sees every byte a stop string
/// could need, and a UTF-8 character split across tokens is decoded whole where it matters.
public struct StopMatcher: Sendable {
    /// Room for replacement characters (3 bytes each) that stand for the 1–3 bytes of a
    /// character cut at either end of a decoded span, which make a span look longer.
    static let slack = 8
    /// Index in the generated tokens where the decoded window starts.
    private(set) var windowStart = 0
    /// Tokens decoded so far (for the regression test on quadratic decoding).
    public private(set) var decodedTokens = 0

    public init() {}

    /// The first of `stops` that the text of `generated` now contains, or nil. Call once
    /// after each new token, with every token generated so far.
    public mutating func match(_ stops: [String], in generated: [Int], detokenize: ([Int]) -> String) -> String? {
        guard !stops.isEmpty, !generated.isEmpty else { return nil }
        let text = decode(generated[windowStart...], detokenize)
        if let s = stops.first(where: { text.contains($0) }) { return s }
        let need = (stops.map(\.utf8.count).max() ?? 0) + Self.slack
        let newest = generated.count - 1
        while windowStart + 1 < newest, decode(generated[(windowStart + 1)..<newest], detokenize).utf8.count >= need {
            windowStart += 1
        }
        return nil
    }

    private mutating func decode(_ tokens: ArraySlice<Int>, _ detokenize: ([Int]) -> String) -> String {
        decodedTokens += tokens.count
        return detokenize(Array(tokens))
    }
}
