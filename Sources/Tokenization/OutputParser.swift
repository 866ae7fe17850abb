// OutputParser.swift: splits the model's generated text, as it streams, into
// reasoning_content, content and tool calls (name first, then argument deltas), exactly as
// deepseek-recipe 0.2.0's stream parser does for V4 (checked by tools/parse_goldens.py):
//
//   thinking:     REASONING</think>CONTENT[\n\n<｜DSML｜tool_calls>…</｜DSML｜tool_calls>]
//   non-thinking: CONTENT[\n\n<｜DSML｜tool_calls>…</｜DSML｜tool_calls>]
//
// The input is handled one Unicode scalar at a time, so the result never depends on how the
// text is cut into chunks.
// * Leading newlines of the reasoning and of the content are dropped; so are newlines right
//   before `</think>` and right before the tool block (see MarkerScanner for the one newline
//   that survives: the one that breaks a held-back partial marker).
// * `<｜DSML｜` in reasoning or content starts the tool block (it ends the reasoning when
//   `</think>` is missing). A `</think>` inside content is dropped. Without tools in the
//   request, DSML stays plain text. NOTE: as in the recipe, `<｜DSML｜` is looked for first and
//   `</think>` in what that scanner releases (`a\n\n</think><｜DSML｜…` keeps content `a\n\n`).
// * Inside the block only `<｜DSML｜invoke name="…">`, `<｜DSML｜parameter name="…" string="…">`
//   and the closing tags count; other text between tags is ignored, text after
//   `</｜DSML｜tool_calls>` is dropped.
// * Arguments are a JSON object streamed as the tags arrive: `{` / `, ` at `parameter name=`,
//   the key as written, `: `, then the value (`string="true"`: JSON-quoted; `"false"`:
//   verbatim); `}` (or `{}`) at `</｜DSML｜` of the invoke. A stream that stops inside a call
//   leaves the arguments as streamed so far (`{"n": 1`, or `` before the first parameter),
//   like the recipe: no closing is invented here (the server decides what to do with it).
import OpenAIAPI

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
    static let dsmlOpen = "<｜DSML｜"
    static let dsmlClose = "</｜DSML｜"
    static let blockOpen = Array("<｜DSML｜tool_calls>".unicodeScalars)
    static let blockClose = Array("</｜DSML｜tool_calls>".unicodeScalars)
    static let invokeOpen = Array("<｜DSML｜invoke name=\"".unicodeScalars)
    static let invokeClose = Array(dsmlClose.unicodeScalars)
    static let parameterOpen = Array("<｜DSML｜parameter name=".unicodeScalars)

    enum Stage: Equatable, Sendable {
        case reasoning, content
        case toolCalls
        case done
    }

    /// Where the tool-block scanner is.
    enum ToolState: Equatable, Sendable {
        case betweenInvokes
        case invokeName
        case betweenParameters
        case keyQuote  // after `parameter name=`
        case key
        case afterKey  // after the key's closing quote
        case attributes  // ` string="…"` up to `>`
        case value
    }

    private var stage: Stage
    private let parseToolCalls: Bool
    /// Whether no scalar other than a newline has arrived in this reasoning/content stage.
    private var atStageStart = true
    private var think: MarkerScanner
    private var dsml: MarkerScanner?
    private var tool = ToolState.betweenInvokes
    /// The tag (or name, or attributes) being read inside the tool block.
    private var tag: [Unicode.Scalar] = []
    private var valueScanner = MarkerScanner(OutputParser.dsmlClose, dropsNewlinesBefore: false)
    private var valueIsString = false
    private var callIndex = -1
    private var parametersInCall = 0
    /// Deltas released by the current `push` / `finish`.
    private var out: [OutputDelta] = []
    /// Whether any tool call was parsed (finish_reason "tool_calls").
    public private(set) var sawToolCalls = false
    /// Whether the text so far ends inside the reasoning (before `</think>`).
    public var inReasoning: Bool { stage == .reasoning }

    public init(thinking: Bool, parseToolCalls: Bool) {
        stage = thinking ? .reasoning : .content
        self.parseToolCalls = parseToolCalls
        think = MarkerScanner(Self.thinkClose, dropsNewlinesBefore: thinking)
        dsml = parseToolCalls ? MarkerScanner(Self.dsmlOpen, dropsNewlinesBefore: true) : nil
    }

    /// Feeds generated text; returns the deltas it decides (consecutive text of one kind merged).
    public mutating func push(_ text: String) -> [OutputDelta] {
        for c in text.unicodeScalars {
            switch stage {
            case .reasoning, .content: feedText(c)
            case .toolCalls: feedTool(c)
            case .done: break
            }
        }
        return takeOutput()
    }

    /// Flushes held-back text at the end of generation.
    public mutating func finish() -> [OutputDelta] {
        switch stage {
        case .reasoning, .content:
            if let held = dsml?.flush() {
                for c in held.unicodeScalars { feedThink(c) }
            }
            emitText(think.flush())
        case .toolCalls:
            if tool == .value { emitValue(valueScanner.flush()) }
        case .done: break
        }
        stage = .done
        return takeOutput()
    }

    private mutating func takeOutput() -> [OutputDelta] {
        defer { out = [] }
        return out
    }

    // MARK: - Reasoning and content

    /// The DSML scanner sees the text first; what it releases goes through the `</think>` scanner.
    private mutating func feedText(_ c: Unicode.Scalar) {
        if atStageStart {
            if c == "\n" { return }
            atStageStart = false
        }
        guard dsml != nil else { return feedThink(c) }
        var events: [MarkerScanner.Event] = []
        dsml!.feed(c, into: &events)
        for e in events {
            switch e {
            case .marker:
                emitText(think.flush())
                stage = .toolCalls
                tool = .betweenInvokes
                tag = Array(Self.dsmlOpen.unicodeScalars)
            case .text(let t):
                for s in t.unicodeScalars { feedThink(s) }
            }
        }
    }

    private mutating func feedThink(_ c: Unicode.Scalar) {
        if stage == .toolCalls { return feedTool(c) }
        var events: [MarkerScanner.Event] = []
        think.feed(c, into: &events)
        for e in events {
            switch e {
            case .marker:
                // In the content a stray `</think>` is dropped.
                guard stage == .reasoning else { continue }
                stage = .content
                atStageStart = true
                think = MarkerScanner(Self.thinkClose, dropsNewlinesBefore: false)
            case .text(let t):
                emitText(t)
            }
        }
    }

    private mutating func emitText(_ s: String) {
        guard !s.isEmpty else { return }
        let reasoning = stage == .reasoning
        switch out.last {
        case .reasoning(let t)? where reasoning: out[out.count - 1] = .reasoning(t + s)
        case .content(let t)? where !reasoning: out[out.count - 1] = .content(t + s)
        default: out.append(reasoning ? .reasoning(s) : .content(s))
        }
    }
}
// MARK: - Tool block

extension OutputParser {
    private static let betweenInvokeTags = [invokeOpen, blockClose, blockOpen]
    private static let betweenParameterTags = [parameterOpen, invokeClose]

    private mutating func feedTool(_ c: Unicode.Scalar) {
        switch tool {
        case .betweenInvokes, .betweenParameters:
            // Text that is not one of the expected tags is ignored, as the recipe does.
            let tags = tool == .betweenInvokes ? Self.betweenInvokeTags : Self.betweenParameterTags
            if tag.isEmpty && c != "<" { return }
            tag.append(c)
            guard tags.contains(where: { $0.starts(with: tag) }) else {
                tag = c == "<" ? [c] : []
                return
            }
            guard let t = tags.first(where: { $0 == tag }) else { return }
            tag = []
            switch t {
            case Self.blockClose: stage = .done
            case Self.invokeOpen: tool = .invokeName
            case Self.blockOpen: break
            case Self.invokeClose:
                appendArguments(parametersInCall == 0 ? "{}" : "}")
                tool = .betweenInvokes
            default:  // parameterOpen
                appendArguments(parametersInCall == 0 ? "{" : ", ")
                tool = .keyQuote
            }
        case .invokeName:
            guard c == "\"" else { return tag.append(c) }
            callIndex += 1
            parametersInCall = 0
            sawToolCalls = true
            out.append(.toolCall(index: callIndex, name: String(String.UnicodeScalarView(tag))))
            tag = []
            tool = .betweenParameters
        case .keyQuote:
            guard c == "\"" else {
                stage = .done
                return
            }
            appendArguments("\"")
            tool = .key
        case .key:
            // NOTE: the key is copied as written (the recipe does not escape it).
            appendArguments(String(c))
            if c == "\"" { tool = .afterKey }
        case .afterKey:
            appendArguments(": ")
            tag = []
            tool = .attributes
            feedTool(c)
        case .attributes:
            guard c == ">" else { return tag.append(c) }
            let attributes = String(String.UnicodeScalarView(tag.drop { $0.properties.isWhitespace }.reversed().drop { $0.properties.isWhitespace }.reversed()))
            tag = []
            switch attributes {
            case #"string="true""#: valueIsString = true
            case #"string="false""#: valueIsString = false
            default:
                stage = .done
                return
            }
            if valueIsString { appendArguments("\"") }
            valueScanner = MarkerScanner(Self.dsmlClose, dropsNewlinesBefore: false)
            tool = .value
        case .value:
            var events: [MarkerScanner.Event] = []
            valueScanner.feed(c, into: &events)
            for e in events {
                switch e {
                case .text(let t): emitValue(t)
                case .marker:
                    if valueIsString { appendArguments("\"") }
                    parametersInCall += 1
                    tool = .betweenParameters
                }
            }
        }
    }

    /// Value text: JSON-escaped inside a string value, verbatim otherwise.
    private mutating func emitValue(_ s: String) {
        guard !s.isEmpty else { return }
        guard valueIsString else { return appendArguments(s) }
        var q = ""
        JSONValue.writeStringForCLI(s, into: &q)
        appendArguments(String(q.dropFirst().dropLast()))
    }

    private mutating func appendArguments(_ s: String) {
        if case .toolArguments(let i, let t)? = out.last, i == callIndex {
            out[out.count - 1] = .toolArguments(index: i, t + s)
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

    /// Parses a complete generation, fed to the streaming parser `chunk` Unicode scalars at a
    /// time (Python's characters, as tools/parse_goldens.py cuts them).
    public static func parse(_ text: String, thinking: Bool, parseToolCalls: Bool, chunk: Int = .max) -> ParsedOutput {
        var p = OutputParser(thinking: thinking, parseToolCalls: parseToolCalls)
        var out = ParsedOutput(thinking: thinking)
        let scalars = Array(text.unicodeScalars)
        let step = max(1, min(chunk, scalars.count))
        var i = 0
        while i < scalars.count {
            let j = min(scalars.count, i + step)
            for d in p.push(String(String.UnicodeScalarView(scalars[i..<j]))) { out.apply(d) }
            i = j
        }
        for d in p.finish() { out.apply(d) }
        return out
    }
}
