// PreTokenizer.swift: V4's pre-tokenizer (tokenizer.json `pre_tokenizer`), hand-compiled.
//
// Three `Split` steps with behaviour Isolated, each applied to every piece of the previous:
//   1. \p{N}{1,3}
//   2. [一-龥぀-ゟ゠-ヿ]+
//   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
//      | ?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
// Matches and the gaps between them both become pieces. Written as direct scanners (with
// the regex engine's leftmost-first alternation and backtracking worked out per branch) so
// that a million-token text splits in well under a second.

/// Character classes of one Unicode scalar, as the regexes use them.
struct ScalarClass: OptionSet {
    let rawValue: UInt8
    static let letter = ScalarClass(rawValue: 1)  // \p{L}
    static let number = ScalarClass(rawValue: 2)  // \p{N}
    static let punctuation = ScalarClass(rawValue: 4)  // \p{P}
    static let symbol = ScalarClass(rawValue: 8)  // \p{S}
    static let mark = ScalarClass(rawValue: 16)  // \p{M}
    static let space = ScalarClass(rawValue: 32)  // \s = White_Space
    static let cjk = ScalarClass(rawValue: 64)  // [一-龥぀-ゟ゠-ヿ]

    init(rawValue: UInt8) { self.rawValue = rawValue }

    init(_ s: Unicode.Scalar) {
        var c: ScalarClass = []
        let v = s.value
        if v < 128 {
            c = ScalarClass.ascii[Int(v)]
        } else if let age = s.properties.age, age.major > 16 {
            // `tokenizers`' regex engine uses Unicode 16 tables: newer characters are unassigned.
            c = []
        } else {
            switch s.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: c.insert(.letter)
            case .decimalNumber, .letterNumber, .otherNumber: c.insert(.number)
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
                .finalPunctuation, .otherPunctuation:
                c.insert(.punctuation)
            case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol: c.insert(.symbol)
            case .nonspacingMark, .spacingMark, .enclosingMark: c.insert(.mark)
            default: break
            }
            if s.properties.isWhitespace { c.insert(.space) }
            if (0x4E00...0x9FA5).contains(v) || (0x3040...0x30FF).contains(v) { c.insert(.cjk) }
        }
        self = c
    }

    static let ascii: [ScalarClass] = (0..<128).map { i -> ScalarClass in
        let s = Unicode.Scalar(UInt8(i))
        var c: ScalarClass = []
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter: c.insert(.letter)
        case .decimalNumber: c.insert(.number)
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .otherPunctuation: c.insert(.punctuation)
        case .mathSymbol, .currencySymbol, .modifierSymbol: c.insert(.symbol)
        default: break
        }
        if s.properties.isWhitespace { c.insert(.space) }
        return c
    }
}

enum PreTokenizer {
    /// Splits `text` (scalars with their classes) into pieces, as ranges of scalar indices.
    static func split(_ scalars: [Unicode.Scalar], _ classes: [ScalarClass]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        out.reserveCapacity(scalars.count / 3 + 1)
        // Step 1 and 2 produce pieces; step 3 splits each of them.
        for p1 in isolate(0..<scalars.count, match: { i, end in matchDigits(classes, i, end) }) {
            for p2 in isolate(p1, match: { i, end in matchCJK(classes, i, end) }) {
                for p3 in isolate(p2, match: { i, end in matchMain(scalars, classes, i, end) }) { out.append(p3) }
            }
        }
        return out
    }

    /// Pieces of `range`: every match of `match` (returns the end of a match at i, or nil)
    /// and the gaps between matches.
    @inline(__always)
    static func isolate(_ range: Range<Int>, match: (Int, Int) -> Int?) -> [Range<Int>] {
        var pieces: [Range<Int>] = []
        var gapStart = range.lowerBound
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
            if let e = match(i, end), e > i {
                if gapStart < i { pieces.append(gapStart..<i) }
                pieces.append(i..<e)
                i = e
                gapStart = e
            } else {
                i += 1
            }
        }
        if gapStart < end { pieces.append(gapStart..<end) }
        return pieces
    }

    @inline(__always)
    static func matchDigits(_ c: [ScalarClass], _ i: Int, _ end: Int) -> Int? {
        guard c[i].contains(.number) else { return nil }
        var j = i + 1
        while j < end, j < i + 3, c[j].contains(.number) { j += 1 }
        return j
    }

    @inline(__always)
    static func matchCJK(_ c: [ScalarClass], _ i: Int, _ end: Int) -> Int? {
        guard c[i].contains(.cjk) else { return nil }
        var j = i + 1
        while j < end, c[j].contains(.cjk) { j += 1 }
        return j
    }

    /// The third regex at i, trying its alternatives in order.
    static func matchMain(_ s: [Unicode.Scalar], _ c: [ScalarClass], _ i: Int, _ end: Int) -> Int? {
        let v = s[i].value
        // A: one ASCII punctuation char, then ASCII letters.
        if v < 128, isASCIIPunct(v), i + 1 < end, isASCIILetter(s[i + 1].value) {
            var j = i + 2
            while j < end, isASCIILetter(s[j].value) { j += 1 }
            return j
        }
        // B: [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
        let lm: ScalarClass = [.letter, .mark]
        if v != 0x0D, v != 0x0A, c[i].isDisjoint(with: [.letter, .punctuation, .symbol]), i + 1 < end, !c[i + 1].isDisjoint(with: lm) {
            var j = i + 2
            while j < end, !c[j].isDisjoint(with: lm) { j += 1 }
            return j
        }
        if !c[i].isDisjoint(with: lm) {
            var j = i + 1
            while j < end, !c[j].isDisjoint(with: lm) { j += 1 }
            return j
        }
        // C: ' '?[\p{P}\p{S}]+[\r\n]*
        let ps: ScalarClass = [.punctuation, .symbol]
        var k = i
        if v == 0x20, i + 1 < end, !c[i + 1].isDisjoint(with: ps) { k = i + 1 }
        if !c[k].isDisjoint(with: ps) {
            var j = k + 1
            while j < end, !c[j].isDisjoint(with: ps) { j += 1 }
            while j < end, s[j].value == 0x0D || s[j].value == 0x0A { j += 1 }
            return j
        }
        // D, E, F: whitespace runs.
        guard c[i].contains(.space) else { return nil }
        var runEnd = i + 1
        while runEnd < end, c[runEnd].contains(.space) { runEnd += 1 }
        // D: \s*[\r\n]+ ends right after the last CR/LF of the run.
        var lastNewline = -1
        for j in i..<runEnd where s[j].value == 0x0D || s[j].value == 0x0A { lastNewline = j }
        if lastNewline >= 0 { return lastNewline + 1 }
        // E: \s+(?!\S): the whole run at the end of the piece, else all but its last char.
        if runEnd == end { return runEnd }
        if runEnd - i >= 2 { return runEnd - 1 }
        // F: \s+
        return runEnd
    }

    @inline(__always)
    static func isASCIILetter(_ v: UInt32) -> Bool { (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) }

    @inline(__always)
    static func isASCIIPunct(_ v: UInt32) -> Bool {
        (v >= 0x21 && v <= 0x2F) || (v >= 0x3A && v <= 0x40) || (v >= 0x5B && v <= 0x60) || (v >= 0x7B && v <= 0x7E)
    }
}
