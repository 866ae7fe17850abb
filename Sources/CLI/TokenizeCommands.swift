// TokenizeCommands.swift: `dsv4 tokenize` and `dsv4 detokenize`.
import ArgumentParser
import Foundation
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
