// JSONValue.swift: JSON that keeps object key order and number spelling, because prompts
// embed tool schemas and arguments byte for byte; with the serialisation DeepSeek's
// renderer uses (", " and ": " separators, non-ASCII kept).
import Foundation

/// A parsed JSON value. Objects keep their key order; numbers keep their source text.
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var objectValue: [(String, JSONValue)]? { if case .object(let o) = self { return o }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }

    /// The type name used in error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

/// A JSON syntax error with its byte offset.
public struct JSONParseError: Error, CustomStringConvertible, Equatable {
    public let offset: Int
    public let message: String
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

extension JSONValue {
    /// Parses `text` strictly (RFC 8259), with a nesting limit.
    public static func parse(_ text: String, maxDepth: Int = 256) throws -> JSONValue {
        try parse(Array(text.utf8), maxDepth: maxDepth)
    }

    public static func parse(_ bytes: [UInt8], maxDepth: Int = 256) throws -> JSONValue {
        var p = Parser(b: bytes, maxDepth: maxDepth)
        p.skip()
        let v = try p.value(depth: 0)
        p.skip()
        guard p.i == bytes.count else { throw JSONParseError(offset: p.i, message: "unexpected data after the value") }
        return v
    }

    private struct Parser {
        let b: [UInt8]
        let maxDepth: Int
        var i = 0

        init(b: [UInt8], maxDepth: Int) {
            self.b = b
            self.maxDepth = maxDepth
        }

        mutating func skip() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        }

        func fail(_ m: String) -> JSONParseError { JSONParseError(offset: i, message: m) }

        mutating func value(depth: Int) throws -> JSONValue {
            guard depth <= maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
            guard i < b.count else { throw fail("unexpected end of input") }
            switch b[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [(String, JSONValue)] = []
                skip()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                while true {
                    skip()
                    guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                    let k = try string()
                    skip()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1
                    skip()
                    members.append((k, try value(depth: depth + 1)))
                    skip()
                    guard i < b.count else { throw fail("unterminated object") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [JSONValue] = []
                skip()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    skip()
                    items.append(try value(depth: depth + 1))
                    skip()
                    guard i < b.count else { throw fail("unterminated array") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            default:
                return .number(try number())
            }
        }

        mutating func literal(_ word: String, _ v: JSONValue) throws -> JSONValue {
            let w = Array(word.utf8)
            guard i + w.count <= b.count, Array(b[i..<(i + w.count)]) == w else { throw fail("invalid literal") }
            i += w.count
            return v
        }

        mutating func number() throws -> String {
            let start = i
            if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
            guard i < b.count, (0x30...0x39).contains(b[i]) else { throw fail("invalid value") }
            if b[i] == 0x30 { i += 1 } else { while i < b.count, (0x30...0x39).contains(b[i]) { i += 1 } }
            if i < b.count, b[i] == UInt8(ascii: ".") {
                i += 1
                guard i < b.count, (0x30...0x39).contains(b[i]) else { throw fail("invalid number") }
                while i < b.count, (0x30...0x39).contains(b[i]) { i += 1 }
            }
            if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
                i += 1
                if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
                guard i < b.count, (0x30...0x39).contains(b[i]) else { throw fail("invalid number") }
                while i < b.count, (0x30...0x39).contains(b[i]) { i += 1 }
            }
            guard i - start <= 512 else { throw fail("number too long") }
            return String(decoding: b[start..<i], as: UTF8.self)
        }

        mutating func string() throws -> String {
            i += 1  // opening quote
            var out: [UInt8] = []
            while true {
                guard i < b.count else { throw fail("unterminated string") }
                let c = b[i]
                if c == UInt8(ascii: "\"") { i += 1; break }
                if c < 0x20 { throw fail("control character in string") }
                if c != UInt8(ascii: "\\") {
                    out.append(c)
                    i += 1
                    continue
                }
                i += 1
                guard i < b.count else { throw fail("unterminated escape") }
                let e = b[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var cp = try hex4()
                    if (0xD800...0xDBFF).contains(cp) {
                        guard i + 1 < b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else { throw fail("unpaired surrogate") }
                        i += 2
                        let lo = try hex4()
                        guard (0xDC00...0xDFFF).contains(lo) else { throw fail("unpaired surrogate") }
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(cp) {
                        throw fail("unpaired surrogate")
                    }
                    out.append(contentsOf: Array(String(Unicode.Scalar(cp)!).utf8))
                default: throw fail("invalid escape")
                }
            }
            guard let s = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
            return s
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= b.count else { throw fail("short \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = b[i]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw fail("bad hex digit")
                }
                v = v << 4 | d
                i += 1
            }
            return v
        }
    }

    /// DeepSeek's prompt serialisation: `", "` and `": "` separators, non-ASCII kept,
    /// key order kept, floats in shortest form ("2.50" → "2.5", "1e-5" → "0.00001").
    public func promptJSON() -> String {
        var out = ""
        write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let v): out += v ? "true" : "false"
        case .number(let n): out += Self.formatNumber(n)
        case .string(let s): Self.writeString(s, into: &out)
        case .array(let a):
            out += "["
            for (k, v) in a.enumerated() {
                if k > 0 { out += ", " }
                v.write(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (k, (key, v)) in o.enumerated() {
                if k > 0 { out += ", " }
                Self.writeString(key, into: &out)
                out += ": "
                v.write(into: &out)
            }
            out += "}"
        }
    }

    /// A JSON string literal of `s` (for tools that print JSON lines).
    public static func writeStringForCLI(_ s: String, into out: inout String) { writeString(s, into: &out) }

    static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    /// Integers keep their digits; other numbers print as the shortest decimal that reads
    /// back the same double, without an exponent in the usual range.
    static func formatNumber(_ n: String) -> String {
        let isInteger = !n.contains(".") && !n.contains("e") && !n.contains("E")
        if isInteger { return n }
        guard let d = Double(n), d.isFinite else { return n }
        var s = "\(d)"  // shortest round-trip digits, e.g. "2.5", "1e-05", "1.0"
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            let mantissa = String(s[..<e])
            let exp = Int(s[s.index(after: e)...]) ?? 0
            if exp >= -7 && exp < 17 {
                let negative = mantissa.hasPrefix("-")
                var digits = mantissa.replacingOccurrences(of: "-", with: "")
                var point = digits.firstIndex(of: ".").map { digits.distance(from: digits.startIndex, to: $0) } ?? digits.count
                digits.removeAll { $0 == "." }
                point += exp
                if point <= 0 {
                    digits = "0." + String(repeating: "0", count: -point) + digits
                } else if point >= digits.count {
                    digits += String(repeating: "0", count: point - digits.count) + ".0"
                } else {
                    digits.insert(".", at: digits.index(digits.startIndex, offsetBy: point))
                }
                s = (negative ? "-" : "") + digits
            }
        }
        return s
    }
}
