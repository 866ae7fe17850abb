// OutputParser.swift: splits the model's generated text, as it streams, into
// reasoning_content, content and tool calls (name first, then argument deltas), the way
// deepseek-recipe's stream parser does for V4:
//
//   thinking:     REASONING</think>CONTENT[\n\n<｜DSML｜tool_calls>…</｜DSML｜tool_calls>]
//   non-thinking: CONTENT[\n\n<｜DSML｜tool_calls>…</｜DSML｜tool_calls>]
//
// * A tool block that starts before `</think>` ends the reasoning (recovery).
// * `</think>` never reaches content; newlines before the tool block are dropped.
// * Parameters become a JSON object: `string="true"` values JSON-quoted as they stream,
//   others inserted verbatim; `{}` for an invoke without parameters.
// * Text after the tool block is dropped; an unterminated block keeps what was parsed.
// * Without tools in the request, DSML stays plain content.
// Partial markers at the end of a chunk are held back until they are decided.

/// One piece of parsed output.
public enum OutputDelta: Equatable, Sendable {
    case reasoning(String)
    case content(String)
    /// A new tool call `index` with its function name.
    case toolCall(index: Int, name: String)
    /// More of the JSON arguments of tool call `index`.
    case toolArguments(index: Int, String)
}

public struct OutputParser: Sendable {
    static let thinkClose = "</think>"
    static let blockOpen = "<｜DSML｜tool_calls>"
    static let blockClose = "</｜DSML｜tool_calls>"
    static let invokeOpen = "<｜DSML｜invoke name=\""
    static let invokeClose = "</｜DSML｜invoke>"
    static let paramOpen = "<｜DSML｜parameter name=\""
    static let paramClose = "</｜DSML｜parameter>"

    enum Stage: Equatable, Sendable {
        case reasoning, content
        case block  // between invokes
        case invoke  // between parameters
        case parameterHeader  // key emitted, waiting for string="…">
        case parameter(string: Bool)
        case done
    }

    private var stage: Stage
    private let parseToolCalls: Bool
    private var buffer = ""
    private var callIndex = -1
    private var parametersInCall = 0
    /// Whether the current reasoning/content stage has emitted text (leading newlines of
    /// each are dropped).
    private var stageEmitted = false
    /// Whether any tool call was parsed (finish_reason "tool_calls").
    public private(set) var sawToolCalls = false

    public init(thinking: Bool, parseToolCalls: Bool) {
        stage = thinking ? .reasoning : .content
        self.parseToolCalls = parseToolCalls
    }

    public mutating func push(_ text: String) -> [OutputDelta] {
        var out: [OutputDelta] = []
        var text = Substring(text)
        // As in deepseek-recipe's tag scanner: a newline that arrives right after a held-back
        // partial marker and breaks it is plain text, emitted with the held characters.
        if stage == .reasoning || stage == .content, let first = text.first, first == "\n" {
            var markers = [Self.thinkClose]
            if parseToolCalls { markers.append(Self.blockOpen) }
            let held = Self.heldBack(buffer[...], markers)
            if held > 0, held == buffer.count {
                emit(buffer + "\n", reasoning: stage == .reasoning, into: &out)
                buffer = ""
                text = text.dropFirst()
            }
        }
        buffer += text
        return out + drain(final: false)
    }

    /// Flushes held-back text at the end of generation.
    public mutating func finish() -> [OutputDelta] { drain(final: true) }

    /// Length of the longest suffix of `s` that is a proper prefix of one of `markers`.
    static func heldBack(_ s: Substring, _ markers: [String]) -> Int {
        var best = 0
        for m in markers {
            let maxLen = min(m.count - 1, s.count)
            var n = maxLen
            while n > best {
                if m.hasPrefix(s.suffix(n)) {
                    best = n
                    break
                }
                n -= 1
            }
        }
        return best
    }

    /// Trailing newlines of `s` that may be dropped (before `</think>` or a tool block) or
    /// held back while streaming.
    static func strippableNewlines(_ s: Substring, _ markers: [String]) -> Int {
        var run = 0
        var end = s.endIndex
        while end > s.startIndex, s[s.index(before: end)] == "\n" {
            end = s.index(before: end)
            run += 1
        }
        guard run > 0 else { return 0 }
        _ = markers
        return run
    }

    private mutating func drain(final: Bool) -> [OutputDelta] {
        var out: [OutputDelta] = []
        var progress = true
        while progress {
            progress = false
            switch stage {
            case .reasoning, .content:
                let reasoning = stage == .reasoning
                var markers = [Self.thinkClose]
                if parseToolCalls { markers.append(Self.blockOpen) }
                let think = buffer.range(of: Self.thinkClose)
                let block = parseToolCalls ? buffer.range(of: Self.blockOpen) : nil
                if let b = block, think == nil || b.lowerBound < think!.lowerBound {
                    var before = buffer[..<b.lowerBound]
                    before = before.dropLast(Self.strippableNewlines(before, markers))
                    emit(String(before), reasoning: reasoning, into: &out)
                    if reasoning { out.append(.content("")) }
                    buffer = String(buffer[b.upperBound...])
                    stage = .block
                    progress = true
                } else if let t = think {
                    var before = buffer[..<t.lowerBound]
                    if reasoning { before = before.dropLast(Self.strippableNewlines(before, markers)) }
                    emit(String(before), reasoning: reasoning, into: &out)
                    buffer = String(buffer[t.upperBound...])
                    if reasoning {
                        stageEmitted = false
                        stage = .content
                        out.append(.content(""))
                    }
                    progress = true
                } else if final {
                    emit(buffer, reasoning: reasoning, into: &out)
                    if reasoning { out.append(.content("")) }
                    buffer = ""
                    stage = .done
                } else {
                    // Hold back a partial marker, and newlines that may precede a tool block.
                    var keep = Self.heldBack(buffer[...], markers)
                    if parseToolCalls || reasoning { keep += Self.strippableNewlines(buffer.dropLast(keep), markers) }
                    let cut = buffer.index(buffer.endIndex, offsetBy: -keep)
                    emit(String(buffer[..<cut]), reasoning: reasoning, into: &out)
                    buffer = String(buffer[cut...])
                }
            case .block, .invoke:
                let trimmed = buffer.drop { $0 == "\n" || $0 == " " || $0 == "\r" || $0 == "\t" }
                if trimmed.isEmpty {
                    buffer = ""
                    if final { stage = .done }
                    break
                }
                if stage == .block, trimmed.hasPrefix(Self.blockClose) {
                    buffer = ""
                    stage = .done
                } else if stage == .block, trimmed.hasPrefix(Self.invokeOpen) {
                    let rest = trimmed.dropFirst(Self.invokeOpen.count)
                    guard let q = rest.range(of: "\">") else {
                        if final { stage = .done }
                        break
                    }
                    callIndex += 1
                    parametersInCall = 0
                    sawToolCalls = true
                    out.append(.toolCall(index: callIndex, name: String(rest[..<q.lowerBound])))
                    buffer = String(rest[q.upperBound...])
                    stage = .invoke
                    progress = true
                } else if stage == .invoke, trimmed.hasPrefix(Self.invokeClose) {
                    out.append(.toolArguments(index: callIndex, parametersInCall == 0 ? "{}" : "}"))
                    buffer = String(trimmed.dropFirst(Self.invokeClose.count))
                    stage = .block
                    progress = true
                } else if stage == .invoke, trimmed.hasPrefix(Self.paramOpen) {
                    let rest = trimmed.dropFirst(Self.paramOpen.count)
                    guard let q = rest.firstIndex(of: "\"") else {
                        if final { stage = .done }
                        break
                    }
                    var key = ""
                    JSONValue.writeStringForCLI(String(rest[..<q]), into: &key)
                    out.append(.toolArguments(index: callIndex, (parametersInCall == 0 ? "{" : ", ") + key + ": "))
                    buffer = String(rest[rest.index(after: q)...])
                    stage = .parameterHeader
                    progress = true
                } else {
                    // Not (yet) a known tag: wait for more text, or give up at the end.
                    let candidates = stage == .block ? [Self.blockClose, Self.invokeOpen] : [Self.invokeClose, Self.paramOpen]
                    if !final, candidates.contains(where: { $0.hasPrefix(trimmed) }) { break }
                    if final, stage == .invoke, Self.invokeClose.hasPrefix(trimmed) {
                        out.append(.toolArguments(index: callIndex, parametersInCall == 0 ? "{}" : "}"))
                    }
                    buffer = ""
                    stage = .done
                }
            case .parameterHeader:
                let attr = " string=\""
                guard buffer.hasPrefix(attr), let e = buffer.range(of: "\">") else {
                    if final || !(buffer.hasPrefix(attr) || attr.hasPrefix(buffer)) { stage = .done }
                    break
                }
                let isString = buffer[buffer.index(buffer.startIndex, offsetBy: attr.count)..<e.lowerBound] == "true"
                if isString { out.append(.toolArguments(index: callIndex, "\"")) }
                buffer = String(buffer[e.upperBound...])
                stage = .parameter(string: isString)
                progress = true
            case .parameter(let isString):
                if let c = buffer.range(of: Self.paramClose) {
                    appendValue(String(buffer[..<c.lowerBound]), string: isString, into: &out)
                    if isString { out.append(.toolArguments(index: callIndex, "\"")) }
                    parametersInCall += 1
                    buffer = String(buffer[c.upperBound...])
                    stage = .invoke
                    progress = true
                } else if final {
                    // An unterminated value (as deepseek-recipe: a string that ends in a partial
                    // closing tag is closed; anything else is passed through as it is).
                    let keep = isString ? Self.heldBack(buffer[...], [Self.paramClose]) : 0
                    appendValue(String(buffer.dropLast(keep)), string: isString, into: &out)
                    if isString && keep > 0 { out.append(.toolArguments(index: callIndex, "\"")) }
                    buffer = ""
                    stage = .done
                } else {
                    let keep = Self.heldBack(buffer[...], [Self.paramClose])
                    let cut = buffer.index(buffer.endIndex, offsetBy: -keep)
                    appendValue(String(buffer[..<cut]), string: isString, into: &out)
                    buffer = String(buffer[cut...])
                }
            case .done:
                buffer = ""
            }
        }
        return out
    }

    private mutating func emit(_ s: String, reasoning: Bool, into out: inout [OutputDelta]) {
        var text = Substring(s)
        if !stageEmitted { text = text.drop { $0 == "\n" } }
        guard !text.isEmpty else { return }
        stageEmitted = true
        out.append(reasoning ? .reasoning(String(text)) : .content(String(text)))
    }

    private func appendValue(_ s: String, string: Bool, into out: inout [OutputDelta]) {
        guard !s.isEmpty else { return }
        if string {
            var q = ""
            JSONValue.writeStringForCLI(s, into: &q)
            out.append(.toolArguments(index: callIndex, String(q.dropFirst().dropLast())))
        } else {
            out.append(.toolArguments(index: callIndex, s))
        }
    }
}

/// A whole parsed assistant message (the deltas folded together).
public struct ParsedOutput: Equatable, Sendable {
    public var reasoning: String?
    public var content: String?
    public var toolCalls: [(name: String, arguments: String)] = []

    /// Empty output as the API reports it: content "" and, in thinking mode, reasoning "".
    public init(thinking: Bool) {
        reasoning = thinking ? "" : nil
        content = ""
    }

    public static func == (a: ParsedOutput, b: ParsedOutput) -> Bool {
        a.reasoning == b.reasoning && a.content == b.content && a.toolCalls.count == b.toolCalls.count
            && zip(a.toolCalls, b.toolCalls).allSatisfy { $0.name == $1.name && $0.arguments == $1.arguments }
    }

    public mutating func apply(_ d: OutputDelta) {
        switch d {
        case .reasoning(let s): reasoning = (reasoning ?? "") + s
        case .content(let s): content = (content ?? "") + s
        case .toolCall(_, let name): toolCalls.append((name, ""))
        case .toolArguments(let i, let s): if i < toolCalls.count { toolCalls[i].arguments += s }
        }
    }

    /// Parses a complete generation, fed to the streaming parser `chunk` characters at a time.
    public static func parse(_ text: String, thinking: Bool, parseToolCalls: Bool, chunk: Int = .max) -> ParsedOutput {
        var p = OutputParser(thinking: thinking, parseToolCalls: parseToolCalls)
        var out = ParsedOutput(thinking: thinking)
        let chars = Array(text)
        let step = max(1, min(chunk, chars.count))
        var i = 0
        while i < chars.count {
            let j = min(chars.count, i + step)
            for d in p.push(String(chars[i..<j])) { out.apply(d) }
            i = j
        }
        for d in p.finish() { out.apply(d) }
        return out
    }
}
