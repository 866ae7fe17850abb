// StructuredLogHandler.swift: a swift-log handler writing one line per entry to stderr,
// as logfmt (`ts=… level=info msg=request request_id=… status=200`) or as a JSON object.
import Foundation
import Logging
import OpenAIAPI
import Synchronization

/// How log lines are written.
public enum LogFormat: String, Sendable, CaseIterable {
    case logfmt, json
}

public struct StructuredLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let label: String
    let format: LogFormat
    let sink: @Sendable (String) -> Void

    /// - Parameters:
    ///   - sink: receives each finished line (with its newline); stderr by default.
    public init(label: String, level: Logger.Level, format: LogFormat, sink: (@Sendable (String) -> Void)? = nil) {
        self.label = label
        logLevel = level
        self.format = format
        self.sink = sink ?? StructuredLogHandler.standardError
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private static let stderrLock = Mutex(())
    static let standardError: @Sendable (String) -> Void = { line in
        StructuredLogHandler.stderrLock.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }

    public func log(event: LogEvent) {
        var fields: [(String, Logger.MetadataValue)] = [
            ("ts", .string(Self.timestamp())), ("level", .string(event.level.rawValue)), ("msg", .string(event.message.description)),
        ]
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        fields += merged.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        sink(Self.render(fields, format: format) + "\n")
    }

    // MARK: - Rendering

    static func render(_ fields: [(String, Logger.MetadataValue)], format: LogFormat) -> String {
        switch format {
        case .json: return "{" + fields.map { "\(jsonString($0.0)): \(json($0.1))" }.joined(separator: ", ") + "}"
        case .logfmt: return fields.map { "\($0.0)=\(logfmt($0.1))" }.joined(separator: " ")
        }
    }

    static func json(_ v: Logger.MetadataValue) -> String {
        switch v {
        case .string(let s): return jsonString(s)
        case .stringConvertible(let c):
            switch c {
            case let b as Bool: return b ? "true" : "false"
            case let i as Int: return String(i)
            case let d as Double where d.isFinite: return String(d)
            default: return jsonString(c.description)
            }
        case .array(let a): return "[" + a.map(json).joined(separator: ", ") + "]"
        case .dictionary(let d): return "{" + d.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)): \(json($0.value))" }.joined(separator: ", ") + "}"
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = ""
        JSONValue.writeStringForCLI(s, into: &out)
        return out
    }

    /// A logfmt value: bare when it is a simple token, else quoted with escapes.
    static func logfmt(_ v: Logger.MetadataValue) -> String {
        let s: String
        switch v {
        case .string(let t): s = t
        case .stringConvertible(let c): s = c.description
        case .array, .dictionary: s = json(v)
        }
        let bare = !s.isEmpty && s.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F && $0 != "\"" && $0 != "=" && $0 != "\\" }
        return bare ? s : jsonString(s)
    }

    static func timestamp() -> String {
        let f = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
        return Date().formatted(f)
    }
}
