// PromptRenderer.swift: a Chat Completions conversation → the DeepSeek-V4 prompt text,
// byte for byte as DeepSeek's own renderer (deepseek-recipe's DeepseekV4Encoding) writes it.
//
//   BOS [effort preamble] SYSTEM [\n\n## Tools…] { <｜User｜>USER  <｜Assistant｜>opener ASSISTANT EOS }
//   <｜Assistant｜><think> | </think>
//
// Rules (checked against deepseek-recipe 0.2.0 by tools/render_goldens.py):
// * every system (and developer) message is hoisted to the top, joined by blank lines;
//   request tools are appended to that text after a blank line (an empty system if none);
// * consecutive user and tool messages form one user turn, blocks joined by blank lines;
//   tool results become <tool_result>…</tool_result>, in the order of the calls;
// * a response_format follows (after a blank line) as a "## Response Format" section;
// * thinking mode keeps assistant reasoning only when the request declares tools (then
//   every assistant turn is `<think>REASONING</think>…`, empty reasoning when absent);
//   otherwise history turns open with `</think>`;
// * the prompt always ends with a generation opener, unless the last message is an
//   assistant prefix, which is continued without EOS.
import OpenAIAPI

public enum PromptRenderer {
    public static let bos = "<｜begin▁of▁sentence｜>"
    public static let eos = "<｜end▁of▁sentence｜>"
    public static let user = "<｜User｜>"
    public static let assistant = "<｜Assistant｜>"
    public static let latestReminder = "<｜latest_reminder｜>"
    public static let thinkOpen = "<think>"
    public static let thinkClose = "</think>"
    public static let dsml = "｜DSML｜"

    static let highEffort = """
        Reasoning Effort: Absolute maximum with no shortcuts permitted.
        You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial scenarios.
        Explicitly write out your entire deliberation process, documenting every intermediate step, considered alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.


        """
    static let maxEffort = """
        Reasoning Effort: Beyond maximum — exhaustive, relentless, and uncompromising.
        You MUST reason with the utmost depth and rigor, leaving absolutely nothing to chance: exhaustively decompose the problem into its most fundamental components, trace every causal chain to its root, and resolve the underlying cause rather than any surface symptom.
        Do not stop reasoning until you have independently verified the solution from multiple angles and are certain that no assumption remains unchecked and no error remains undiscovered.


        """

    static let toolsHeader = """
        ## Tools

        You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "<｜DSML｜tool_calls>" block like the following:

        <｜DSML｜tool_calls>
        <｜DSML｜invoke name="$TOOL_NAME">
        <｜DSML｜parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</｜DSML｜parameter>
        ...
        </｜DSML｜invoke>
        <｜DSML｜invoke name="$TOOL_NAME2">
        ...
        </｜DSML｜invoke>
        </｜DSML｜tool_calls>

        String parameters should be specified as is and set `string="true"`. For all other types (numbers, booleans, arrays, objects), pass the value in JSON format and set `string="false"`.

        If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside <think>...</think> BEFORE any tool calls or final response.

        Otherwise, output directly after </think> with tool calls or final response.

        ### Available Tool Schemas


        """
    static let toolsFooter = "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n"

    /// The effort preamble (thinking mode only).
    static func preamble(_ effort: String?) -> String {
        switch effort {
        case nil, "medium", "high", "xhigh": highEffort
        case "max", "ultra": maxEffort
        default: ""  // none, minimal, low
        }
    }

    /// A tool's `function` object as the prompt shows it: name, description, parameters first.
    static func toolSchema(_ fn: JSONValue) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("name", fn["name"] ?? .string("")),
            ("description", fn["description"].flatMap { $0.isNull ? nil : $0 } ?? .string("")),
            ("parameters", fn["parameters"].flatMap { $0.isNull ? nil : $0 } ?? .object([])),
        ]
        for (k, v) in fn.objectValue ?? [] where !["name", "description", "parameters", "strict"].contains(k) { members.append((k, v)) }
        return .object(members)
    }

    /// The DSML block for assistant tool calls (without the leading blank line).
    public static func toolCallsBlock(_ calls: [ChatToolCall]) -> String {
        var s = "<\(dsml)tool_calls>\n"
        for c in calls {
            s += "<\(dsml)invoke name=\"\(c.name)\">\n"
            if let parsed = try? JSONValue.parse(c.arguments), let members = parsed.objectValue {
                for (k, v) in members {
                    if let str = v.stringValue {
                        s += "<\(dsml)parameter name=\"\(k)\" string=\"true\">\(str)</\(dsml)parameter>\n"
                    } else {
                        s += "<\(dsml)parameter name=\"\(k)\" string=\"false\">\(v.promptJSON())</\(dsml)parameter>\n"
                    }
                }
            } else {
                s += "<\(dsml)parameter name=\"arguments\" string=\"true\">\(c.arguments)</\(dsml)parameter>\n"
            }
            s += "</\(dsml)invoke>\n"
        }
        return s + "</\(dsml)tool_calls>"
    }

    /// The assistant turn's text after its opener, as the model would have generated it
    /// (reasoning and `</think>` only when `keepReasoning`).
    public static func assistantBody(_ m: ChatMessage, keepReasoning: Bool) -> String {
        var s = keepReasoning ? (m.reasoning ?? "") + thinkClose : ""
        s += m.content
        if !m.toolCalls.isEmpty { s += "\n\n" + toolCallsBlock(m.toolCalls) }
        return s
    }

    /// The recipe renders an assistant's tool calls (and orders their results) by the byte
    /// order of the call ids.
    static func sortedToolCalls(_ calls: [ChatToolCall]) -> [ChatToolCall] {
        calls.enumerated().sorted { x, y in
            let a = Array(x.element.id.utf8), b = Array(y.element.id.utf8)
            return a != b ? a.lexicographicallyPrecedes(b) : x.offset < y.offset
        }.map(\.element)
    }

    /// Renders the whole prompt.
    public static func render(_ conv: ChatConversation) -> String {
        let thinking = conv.thinking
        let keepReasoning = thinking && !conv.tools.isEmpty
        var out = bos
        if thinking { out += preamble(conv.effort) }
        // System (and developer) messages are hoisted; empty ones vanish.
        var system = conv.messages.filter { $0.role == .system && !$0.content.isEmpty }.map(\.content).joined(separator: "\n\n")
        if !conv.tools.isEmpty {
            system += "\n\n" + toolsHeader + conv.tools.map { toolSchema($0).promptJSON() }.joined(separator: "\n") + toolsFooter
        }
        switch conv.responseFormat {
        case .jsonObject?: system += "\n\nYou are a helpful assistant designed to output JSON.\n## Response Format:\n\nReply with JSON object ONLY."
        case .jsonSchema(let schema)?: system += "\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n" + schema.promptJSON()
        case nil: break
        }
        out += system

        let rest = conv.messages.filter { $0.role != .system }
        var i = 0
        var lastCalls: [ChatToolCall] = []
        func opener(reasoningShown: Bool) -> String { assistant + (reasoningShown ? thinkOpen : thinkClose) }
        var endsWithPrefix = false
        while i < rest.count {
            let m = rest[i]
            switch m.role {
            case .user, .tool:
                // One user turn from a run of user and tool messages: results in the order of
                // the (id-sorted) calls; adjacent user messages merge, skipping empty ones; a
                // user block after tool results stays even when empty.
                var blocks: [(text: String, isToolResults: Bool)] = []
                var results: [(Int, Int, String)] = []
                let order = sortedToolCalls(lastCalls).map(\.id)
                func flush() {
                    guard !results.isEmpty else { return }
                    let text = results.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { "<tool_result>\($0.2)</tool_result>" }.joined(separator: "\n\n")
                    blocks.append((text, true))
                    results.removeAll()
                }
                var j = i
                while j < rest.count, rest[j].role == .user || rest[j].role == .tool {
                    let mm = rest[j]
                    if mm.role == .tool {
                        results.append((order.firstIndex(of: mm.toolCallID ?? "") ?? Int.max, results.count, mm.content))
                    } else {
                        flush()
                        if let last = blocks.last, !last.isToolResults {
                            if !mm.content.isEmpty {
                                blocks[blocks.count - 1].text = last.text.isEmpty ? mm.content : last.text + "\n\n" + mm.content
                            }
                        } else {
                            blocks.append((mm.content, false))
                        }
                    }
                    j += 1
                }
                flush()
                out += user + blocks.map(\.text).joined(separator: "\n\n")
                i = j
            case .latestReminder:
                out += latestReminder + m.content
                i += 1
            case .assistant:
                lastCalls = m.toolCalls
                let shown = keepReasoning || (thinking && m.prefix)
                out += opener(reasoningShown: shown)
                var sortedMessage = m
                sortedMessage.toolCalls = sortedToolCalls(m.toolCalls)
                out += assistantBody(sortedMessage, keepReasoning: shown)
                if m.prefix {
                    endsWithPrefix = true
                } else {
                    out += eos
                }
                i += 1
            case .system:
                i += 1
            }
        }
        if !endsWithPrefix { out += opener(reasoningShown: thinking) }
        return out
    }
}
