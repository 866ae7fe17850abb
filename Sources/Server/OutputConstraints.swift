// OutputConstraints.swift: the constraints behind `response_format` (JSON) and
// `tool_choice` required/named: byte-level automata over each candidate token's bytes.
// Reasoning is free; the constraint applies from the first token after `</think>` (or from
// the start when thinking is off).
import Engine
import Foundation
import OpenAIAPI
import Tokenization

/// An incremental JSON syntax checker over bytes (RFC 8259), top level an object.
struct JSONAutomaton {
    enum Frame { case object, array }
    enum Expect { case value, keyOrClose, key, colon, commaOrClose, done }
    enum Lex: Equatable { case none, string(escape: Int), key(escape: Int), number, literal(String, Int) }

    var stack: [Frame] = []
    var expect: Expect = .value
    var lex: Lex = .none
    var started = false
    var whitespaceRun = 0
    var numberText: [UInt8] = []
    var integerOnly = false
    /// Right after '[': ']' may close the (empty) array.
    var arrayJustOpened = false
    /// Inside a string: continuation bytes the current UTF-8 character still needs, and the
    /// range the next one must fall in (RFC 3629: no overlong forms, no surrogates).
    var utf8Needed = 0
    var utf8Next: ClosedRange<UInt8> = 0x80...0xBF

    // MARK: schema (response_format json_schema)
    /// Schema of each open container (parallel to `stack`); nil entries: unconstrained.
    var schemas: [SchemaNode?] = []
    /// Keys seen in each open object.
    var seenKeys: [Set<String>] = []
    /// Schema of the value about to start.
    var pendingSchema: SchemaNode?
    /// Bytes of the key being read.
    var keyBytes: [UInt8] = []
    /// Enum/const texts still possible for the value being read, and bytes matched.
    var literalCandidates: [[UInt8]]?
    var literalMatched = 0

    init(schema: SchemaNode? = nil) { pendingSchema = schema }

    func typeAllowed(_ t: String) -> Bool {
        guard let types = pendingSchema?.types else { return true }
        return types.contains(t) || (t == "integer" && types.contains("number"))
    }

    /// Keys the current object may still take, nil if any.
    var allowedKeys: [String]? {
        guard let s = schemas.last ?? nil, !s.additionalProperties else { return nil }
        let seen = seenKeys.last ?? []
        return s.properties.map(\.0).filter { !seen.contains($0) }
    }

    var objectCanClose: Bool {
        guard let s = schemas.last ?? nil else { return true }
        return s.required.isSubset(of: seenKeys.last ?? [])
    }

    mutating func open(_ frame: Frame) {
        stack.append(frame)
        schemas.append(pendingSchema)
        seenKeys.append([])
        pendingSchema = frame == .array ? pendingSchema?.items : nil
    }

    mutating func close() {
        stack.removeLast()
        schemas.removeLast()
        seenKeys.removeLast()
        valueDone()
    }

    var isComplete: Bool {
        expect == .done && lex == .none && literalCandidates == nil
            || (lex == .number && stack.isEmpty && Self.validNumber(numberText) && literalCandidates == nil)
    }

    static func isWS(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }

    /// A complete JSON number whose value is a finite double (so every JSON parser reads it).
    static func validNumber(_ t: [UInt8]) -> Bool {
        guard let s = String(bytes: t, encoding: .utf8), (try? JSONValue.parse(s)) != nil else { return false }
        return Double(s)?.isFinite == true
    }

    /// Feeds one byte of a string's text as UTF-8; false if it cannot be valid UTF-8.
    mutating func feedUTF8(_ b: UInt8) -> Bool {
        if utf8Needed > 0 {
            guard utf8Next.contains(b) else { return false }
            utf8Needed -= 1
            utf8Next = 0x80...0xBF
            return true
        }
        switch b {
        case 0x00...0x7F: return true
        case 0xC2...0xDF: utf8Needed = 1
        case 0xE0: utf8Needed = 2; utf8Next = 0xA0...0xBF
        case 0xED: utf8Needed = 2; utf8Next = 0x80...0x9F
        case 0xE1...0xEF: utf8Needed = 2
        case 0xF0: utf8Needed = 3; utf8Next = 0x90...0xBF
        case 0xF4: utf8Needed = 3; utf8Next = 0x80...0x8F
        case 0xF1...0xF3: utf8Needed = 3
        default: return false
        }
        return true
    }

    /// After a value ends.
    mutating func valueDone() { expect = stack.isEmpty ? .done : .commaOrClose }

    /// Feeds one byte; false if the text can no longer be valid JSON.
    mutating func feed(_ b: UInt8) -> Bool {
        if literalCandidates != nil { return feedLiteralCandidate(b) }
        switch lex {
        case .string(let esc): return feedString(b, escape: esc, isKey: false)
        case .key(let esc): return feedString(b, escape: esc, isKey: true)
        case .number: return feedNumber(b)
        case .literal(let word, let i):
            let w = Array(word.utf8)
            guard b == w[i] else { return false }
            if i + 1 == w.count { lex = .none; valueDone() } else { lex = .literal(word, i + 1) }
            return true
        case .none:
            break
        }
        if Self.isWS(b) {
            whitespaceRun += 1
            return started && whitespaceRun <= 4 && expect != .done
        }
        whitespaceRun = 0
        let emptyArrayOK = arrayJustOpened
        arrayJustOpened = false
        switch expect {
        case .done:
            return false
        case .value:
            return feedValueStart(b, emptyArrayOK: emptyArrayOK)
        case .keyOrClose, .key:
            if b == UInt8(ascii: "}"), expect == .keyOrClose {
                guard objectCanClose else { return false }
                close()
                return true
            }
            guard b == UInt8(ascii: "\""), allowedKeys?.isEmpty != true else { return false }
            lex = .key(escape: 0)
            keyBytes = []
            return true
        case .colon:
            guard b == UInt8(ascii: ":") else { return false }
            expect = .value
            return true
        case .commaOrClose:
            return feedAfterValue(b)
        }
    }

    /// Inside an enum/const value: follows the remaining candidates byte by byte.
    mutating func feedLiteralCandidate(_ b: UInt8) -> Bool {
        let cands = (literalCandidates ?? []).filter { literalMatched < $0.count && $0[literalMatched] == b }
        if cands.isEmpty {
            // A complete candidate followed by a structural byte ends the value.
            let done = (literalCandidates ?? []).contains { $0.count == literalMatched }
            guard done else { return false }
            literalCandidates = nil
            valueDone()
            return feed(b)
        }
        literalMatched += 1
        literalCandidates = cands
        if cands.count == 1, cands[0].count == literalMatched, stack.isEmpty {
            literalCandidates = nil
            valueDone()
        }
        return true
    }

    /// Inside a string value or an object key (`escape`: 0 plain, 1 after a backslash,
    /// 2…5 the hex digits of \uXXXX).
    mutating func feedString(_ b: UInt8, escape esc: Int, isKey: Bool) -> Bool {
        if esc > 0 {
            if esc == 1 {  // the char after a backslash
                if b == UInt8(ascii: "u") { lex = isKey ? .key(escape: 2) : .string(escape: 2); return true }
                guard "\"\\/bfnrt".utf8.contains(b) else { return false }
            } else {  // hex digits of \uXXXX: esc counts 2…5
                guard (0x30...0x39).contains(b) || (0x41...0x46).contains(b) || (0x61...0x66).contains(b) else { return false }
                if esc < 5 { lex = isKey ? .key(escape: esc + 1) : .string(escape: esc + 1); return true }
            }
            lex = isKey ? .key(escape: 0) : .string(escape: 0)
            return true
        }
        if utf8Needed > 0 { return feedUTF8(b) && (!isKey || keyAccepts(b)) }
        if b == UInt8(ascii: "\\") {
            if isKey, allowedKeys != nil { return false }  // schema keys are plain text
            lex = isKey ? .key(escape: 1) : .string(escape: 1)
            return true
        }
        if b == UInt8(ascii: "\"") {
            lex = .none
            guard isKey else { valueDone(); return true }
            let key = String(decoding: keyBytes, as: UTF8.self)
            if let allowed = allowedKeys, !allowed.contains(key) { return false }
            if seenKeys.last?.contains(key) == true { return false }
            seenKeys[seenKeys.count - 1].insert(key)
            pendingSchema = (schemas.last ?? nil)?.property(key)
            expect = .colon
            return true
        }
        guard b >= 0x20, feedUTF8(b) else { return false }
        return !isKey || keyAccepts(b)
    }

    /// Adds a byte to the key being read; false if no allowed key starts so.
    mutating func keyAccepts(_ b: UInt8) -> Bool {
        keyBytes.append(b)
        if let allowed = allowedKeys, !allowed.contains(where: { $0.utf8.starts(with: keyBytes) }) { return false }
        return true
    }

    /// Inside a number.
    mutating func feedNumber(_ b: UInt8) -> Bool {
        if (0x30...0x39).contains(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") || b == UInt8(ascii: "+") || b == UInt8(ascii: "-") {
            if integerOnly, !(0x30...0x39).contains(b) { return false }
            numberText.append(b)
            return numberText.count < 64 && Self.numberPrefixOK(numberText)
        }
        guard Self.validNumber(numberText) else { return false }
        lex = .none
        valueDone()
        return feed(b)
    }

    /// The first byte of a value (or ']' closing an empty array).
    mutating func feedValueStart(_ b: UInt8, emptyArrayOK: Bool) -> Bool {
        if !started {  // json_object: the top level is an object
            guard b == UInt8(ascii: "{") else { return false }
        }
        started = true
        if b == UInt8(ascii: "]") {
            // An empty array closes right after '['.
            guard emptyArrayOK, case .array? = stack.last else { return false }
            close()
            return true
        }
        if let lits = pendingSchema?.literals {
            // enum / const: the value is one of these texts.
            let cands = lits.filter { $0.first == b }
            guard !cands.isEmpty else { return false }
            literalCandidates = cands
            literalMatched = 1
            if stack.isEmpty, cands.count == 1, cands[0].count == 1 { literalCandidates = nil; valueDone() }
            return true
        }
        switch b {
        case UInt8(ascii: "{"):
            guard typeAllowed("object") else { return false }
            open(.object); expect = .keyOrClose
        case UInt8(ascii: "["):
            guard typeAllowed("array") else { return false }
            open(.array); expect = .value; arrayJustOpened = true
        case UInt8(ascii: "\""):
            guard typeAllowed("string") else { return false }
            lex = .string(escape: 0)
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            guard typeAllowed("boolean") else { return false }
            lex = b == UInt8(ascii: "t") ? .literal("true", 1) : .literal("false", 1)
        case UInt8(ascii: "n"):
            guard typeAllowed("null") else { return false }
            lex = .literal("null", 1)
        case UInt8(ascii: "-"), 0x30...0x39:
            guard typeAllowed("number") || typeAllowed("integer") else { return false }
            integerOnly = pendingSchema?.types.map { $0.contains("integer") && !$0.contains("number") } ?? false
            lex = .number; numberText = [b]
        default: return false
        }
        return true
    }

    /// After a value inside a container: ',' or the container's closing bracket.
    mutating func feedAfterValue(_ b: UInt8) -> Bool {
        guard let top = stack.last else { return false }
        if b == UInt8(ascii: ",") {
            if top == .object {
                guard allowedKeys?.isEmpty != true else { return false }  // every allowed key is used
                expect = .key
            } else {
                expect = .value
                pendingSchema = (schemas.last ?? nil)?.items
            }
            return true
        }
        if b == UInt8(ascii: "}"), top == .object {
            guard objectCanClose else { return false }
            close()
            return true
        }
        if b == UInt8(ascii: "]"), top == .array { close(); return true }
        return false
    }

    /// Whether `t` can still grow into a JSON number.
    static func numberPrefixOK(_ t: [UInt8]) -> Bool {
        if validNumber(t) { return true }
        // A prefix is fine if some short completion makes it a number.
        let s = String(decoding: t, as: UTF8.self)
        return ["0", "1", "e0", "0e0"].contains { (try? JSONValue.parse(s + $0)) != nil }
    }
}

/// Output constraint: free until `</think>` (thinking mode), then checked by `check`.
final class PhasedConstraint: TokenConstraint {
    enum Body {
        case json(JSONAutomaton)
        /// The content must begin with these tokens, in the tokenizer's own spelling (after
        /// which anything goes).
        case prefix([Int], matched: Int)
        /// The content must never contain these bytes; `matched` is how many of them the
        /// content now ends with (a Knuth–Morris–Pratt state).
        case forbid(ForbiddenBytes, matched: Int)
    }

    let tokenizer: BPETokenizer
    let index: FirstByteIndex
    let thinkClose: Int?
    var inContent: Bool
    var body: Body

    init(tokenizer: BPETokenizer, index: FirstByteIndex, thinking: Bool, body: Body) {
        self.tokenizer = tokenizer
        self.index = index
        thinkClose = tokenizer.id(of: "</think>")
        inContent = !thinking
        self.body = body
    }

    func copy() -> any TokenConstraint {
        let c = PhasedConstraint(tokenizer: tokenizer, index: index, thinking: !inContent, body: body)
        c.inContent = inContent
        return c
    }

    /// Tokens whose first byte the body accepts, when fewer than 64 bytes are acceptable.
    func candidateTokens() -> [Int]? {
        guard inContent else { return nil }
        var bytes: [UInt8] = []
        switch body {
        case .json(let a):
            for b in 0...255 {
                var probe = a
                if probe.feed(UInt8(b)) { bytes.append(UInt8(b)) }
            }
        case .prefix(let want, let matched):
            return matched < want.count ? [want[matched]] : nil
        case .forbid:
            return nil
        }
        guard bytes.count < 64 else { return nil }
        return bytes.flatMap { index.tokens[Int($0)] }
    }

    /// Feeds the token's bytes into a copy of the body; nil if they break it.
    func advanced(_ token: Int) -> Body? {
        var b = body
        let bytes = tokenizer.bytes(of: token)
        switch b {
        case .json(var a):
            for x in bytes where !a.feed(x) { return nil }
            b = .json(a)
        case .prefix(let want, let matched):
            if matched < want.count {
                guard token == want[matched] else { return nil }
                b = .prefix(want, matched: matched + 1)
            }
            _ = bytes
        case .forbid(let f, var matched):
            for x in bytes {
                matched = f.next(matched, x)
                if matched == f.pattern.count { return nil }
            }
            b = .forbid(f, matched: matched)
        }
        return b
    }

    func canAccept(_ token: Int) -> Bool {
        guard inContent else { return true }
        return advanced(token) != nil
    }

    func accept(_ token: Int) {
        guard inContent else {
            if token == thinkClose { inContent = true }
            return
        }
        if let b = advanced(token) { body = b }
    }

    var canFinish: Bool {
        guard inContent else { return false }
        switch body {
        case .json(let a): return a.isComplete
        case .prefix(let want, let matched): return matched >= want.count
        case .forbid: return true
        }
    }
}

/// A byte string that output must not contain, with its KMP failure table.
struct ForbiddenBytes {
    let pattern: [UInt8]
    let failure: [Int]

    init(_ text: String) {
        pattern = Array(text.utf8)
        var f = [Int](repeating: 0, count: pattern.count)
        var k = 0
        for i in pattern.indices.dropFirst() {
            while k > 0 && pattern[i] != pattern[k] { k = f[k - 1] }
            if pattern[i] == pattern[k] { k += 1 }
            f[i] = k
        }
        failure = f
    }

    /// The matched length after byte `b`, from `matched` (< pattern.count).
    func next(_ matched: Int, _ b: UInt8) -> Int {
        var k = matched
        while k > 0 && pattern[k] != b { k = failure[k - 1] }
        return pattern[k] == b ? k + 1 : 0
    }
}

/// Token ids by the first byte they stand for (built once per tokenizer).
final class FirstByteIndex: @unchecked Sendable {
    let tokens: [[Int]]

    init(_ tokenizer: BPETokenizer) {
        var t = [[Int]](repeating: [], count: 256)
        for id in 0..<tokenizer.vocabularySize {
            if let b = tokenizer.bytes(of: id).first { t[Int(b)].append(id) }
        }
        tokens = t
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cache: [ObjectIdentifier: FirstByteIndex] = [:]

    static func of(_ tokenizer: BPETokenizer) -> FirstByteIndex {
        lock.withLock {
            if let i = cache[ObjectIdentifier(tokenizer)] { return i }
            let i = FirstByteIndex(tokenizer)
            cache[ObjectIdentifier(tokenizer)] = i
            return i
        }
    }
}

struct ConstraintFactory: TokenConstraintFactory, @unchecked Sendable {
    let tokenizer: BPETokenizer
    let thinking: Bool
    let body: PhasedConstraint.Body

    func make() -> any TokenConstraint {
        PhasedConstraint(tokenizer: tokenizer, index: FirstByteIndex.of(tokenizer), thinking: thinking, body: body)
    }

    /// A JSON object (response_format json_object), or one following `schema` (json_schema).
    static func json(_ tokenizer: BPETokenizer, thinking: Bool, schema: SchemaNode? = nil) -> ConstraintFactory {
        ConstraintFactory(tokenizer: tokenizer, thinking: thinking, body: .json(JSONAutomaton(schema: schema)))
    }

    /// Content without a tool-call block (tool_choice none): the block's opening tag can
    /// never be completed.
    static func noToolCalls(_ tokenizer: BPETokenizer, thinking: Bool) -> ConstraintFactory {
        ConstraintFactory(tokenizer: tokenizer, thinking: thinking, body: .forbid(ForbiddenBytes("<｜DSML｜tool_calls>"), matched: 0))
    }

    /// Content that starts with a tool-call block (tool_choice required), naming `function`
    /// when given (tool_choice naming a function).
    static func toolCall(_ tokenizer: BPETokenizer, thinking: Bool, function: String?) -> ConstraintFactory {
        var s = "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\""
        if let function { s += function + "\">\n" }
        return ConstraintFactory(tokenizer: tokenizer, thinking: thinking, body: .prefix(tokenizer.encode(s), matched: 0))
    }
}
