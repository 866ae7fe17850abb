// TokenizeCommands.swift: `dsv4 tokenize` and `dsv4 detokenize`.
import ArgumentParser
import Foundation
import OpenAIAPI
import Server
import Tokenization

/// Reads all of stdin as UTF-8, failing clearly on invalid bytes.
func readStdinText() -> String {
    let data = FileHandle.standardInput.readDataToEndOfFile()
    guard let s = String(data: data, encoding: .utf8) else { fail("stdin is not valid UTF-8") }
    return s
}

func loadTokenizer(_ model: String) -> BPETokenizer {
    do { return try BPETokenizer(path: model) } catch { fail("\(error)") }
}

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "stdin text → JSON array of token ids (special tokens recognised, nothing added).")
    @Option(help: "Model folder (or a tokenizer.json).") var model: String
    @Flag(help: "Each input line is a JSON string; each output line a JSON array.") var jsonl = false

    func run() throws {
        let tok = loadTokenizer(model)
        if jsonl {
            var lineNumber = 0
            while let line = readLine(strippingNewline: true) {
                lineNumber += 1
                guard let text = try? JSONDecoder().decode(String.self, from: Data(line.utf8)) else {
                    fail("stdin line \(lineNumber): not a JSON string")
                }
                print("[" + tok.encode(text).map(String.init).joined(separator: ",") + "]")
            }
        } else {
            print("[" + tok.encode(readStdinText()).map(String.init).joined(separator: ",") + "]")
        }
    }
}

struct DetokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "detokenize", abstract: "stdin JSON array of token ids → text.")
    @Option(help: "Model folder (or a tokenizer.json).") var model: String

    func run() throws {
        let tok = loadTokenizer(model)
        guard let ids = try? JSONDecoder().decode([Int].self, from: Data(readStdinText().utf8)) else {
            fail("stdin must be a JSON array of integer token ids")
        }
        if let bad = ids.firstIndex(where: { $0 < 0 || $0 >= tok.vocabularySize }) {
            fail("token id \(ids[bad]) at index \(bad) is outside the vocabulary (0..<\(tok.vocabularySize))")
        }
        FileHandle.standardOutput.write(Data(tok.decode(ids).utf8))
    }
}

struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "stdin: a Chat Completions, Responses or Messages request (JSON) → the V4 prompt text (or its token ids).")
    @Option(help: "Model folder (for --ids: its tokenizer.json).") var model: String?
    @Option(help: "The request's API: chat (Chat Completions), responses (OpenAI Responses) or messages (Anthropic).") var api: RenderAPI = .chat
    @Flag(help: "Print the prompt's token ids as a JSON array.") var ids = false
    @Flag(help: "Each stdin line is a request; each output line the JSON string of its prompt (or an error object).") var jsonl = false

    func run() throws {
        let tok: BPETokenizer? = ids ? loadTokenizer(model ?? defaultModelDirectory()) : nil
        func renderOne(_ text: String) throws -> String {
            let body = try JSONValue.parse(text)
            let prompt = PromptRenderer.render(try ChatConversation(request: try api.chatBody(body)))
            if let tok { return "[" + tok.encode(prompt).map(String.init).joined(separator: ",") + "]" }
            return prompt
        }
        if jsonl {
            while let line = readLine(strippingNewline: true) {
                do {
                    var s = ""
                    JSONValue.writeStringForCLI(try renderOne(line), into: &s)
                    print(s)
                } catch {
                    var s = ""
                    JSONValue.writeStringForCLI("\(error)", into: &s)
                    print("{\"error\": \(s)}")
                }
            }
            return
        }
        do {
            let out = try renderOne(readStdinText())
            FileHandle.standardOutput.write(Data((ids ? out + "\n" : out).utf8))
        } catch { fail("\(error)") }
    }
}

/// Which API's request `dsv4 render` reads; the server maps each onto a Chat Completions body.
enum RenderAPI: String, ExpressibleByArgument, CaseIterable {
    case chat, responses, messages

    func chatBody(_ body: JSONValue) throws -> JSONValue {
        switch self {
        case .chat: body
        case .responses: try DSV4Server.chatBody(fromResponses: body)
        case .messages: try DSV4Server.chatBody(fromMessages: body)
        }
    }
}

/// The bundled default model's folder ($DSV4_HOME/models/dsv4-tiny).
func defaultModelDirectory() -> String {
    let home = ProcessInfo.processInfo.environment["DSV4_HOME"] ?? (NSHomeDirectory() + "/.cache/dsv4")
    return home + "/models/dsv4-tiny"
}

struct ParseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parse",
        abstract: "Split generated text into reasoning_content, content and tool_calls (as the server streams it).",
        discussion: """
            stdin lines: {"text": GENERATED, "thinking": true, "tools": true, "chunk": N}; the text is fed in
            N-character pieces (default: all at once). Output lines: {"reasoning_content", "content", "tool_calls"}.
            """)

    func run() throws {
        var lineNumber = 0
        while let line = readLine(strippingNewline: true) {
            lineNumber += 1
            guard let row = try? JSONValue.parse(line), let text = row["text"]?.stringValue else {
                fail("stdin line \(lineNumber): expected an object with a \"text\" string")
            }
            let thinking = row["thinking"]?.boolValue ?? true
            let tools = row["tools"]?.boolValue ?? true
            let chunk = max(1, Int(row["chunk"].flatMap { if case .number(let n) = $0 { return n } else { return nil } } ?? "") ?? Int.max)
            let parsed = ParsedOutput.parse(text, thinking: thinking, parseToolCalls: tools, chunk: chunk)
            func str(_ s: String?) -> String {
                guard let s else { return "null" }
                var o = ""
                JSONValue.writeStringForCLI(s, into: &o)
                return o
            }
            let calls = parsed.toolCalls.map { "{\"name\": \(str($0.name)), \"arguments\": \(str($0.arguments))}" }.joined(separator: ", ")
            print("{\"reasoning_content\": \(str(parsed.reasoning)), \"content\": \(str(parsed.content)), \"tool_calls\": [\(calls)]}")
        }
    }
}
