// ChatRequest+Formats.swift: the parts of a request that change the prompt's system text
// besides tools: `response_format` (json_object / json_schema, appended as a "## Response
// Format" section), and `strict` function tools, whose parameter schemas are normalised as
// deepseek-recipe does (every object closed with additionalProperties false and all of its
// properties required) before they are shown to the model.

/// A structured-output request that the prompt announces.
public enum ResponseFormat: Equatable, Sendable {
    /// Any JSON object.
    case jsonObject
    /// JSON following this schema.
    case jsonSchema(JSONValue)

    /// Reads `response_format` (nil for "text", absent, or a shape the server's own checks
    /// reject with a located error).
    public init?(_ v: JSONValue?) {
        switch v?["type"]?.stringValue {
        case "json_object"?: self = .jsonObject
        case "json_schema"?:
            guard let schema = v?["json_schema"]?["schema"], schema.objectValue != nil else { return nil }
            self = .jsonSchema(schema)
        default: return nil
        }
    }
}

enum StrictSchema {
    /// The keywords a strict schema of each type keeps, in the order the recipe writes them
    /// (its typed schema model: anything else — titles, `$defs`, lengths… — is dropped).
    static let kept: [String: [String]] = [
        "string": ["type", "description", "pattern", "format", "enum"],
        "number": ["type", "description", "const", "default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"],
        "boolean": ["type", "description"], "null": ["type", "description"],
        "array": ["type", "items", "description"],
        "object": ["type", "properties", "additionalProperties", "required", "description"],
    ]

    /// The schema of a `strict` tool as deepseek-recipe shows it: each object closed with
    /// `additionalProperties: false` and `required` listing every property (the top level may
    /// omit `properties`; nested objects may not), keywords in the recipe's order.
    static func normalize(_ schema: JSONValue, path: String, top: Bool = true) throws -> JSONValue {
        guard schema.objectValue != nil else { return schema }
        guard let type = schema["type"]?.stringValue else {
            // A union (`anyOf`), a reference or a list of types: only that keyword is kept.
            if let any = schema["anyOf"]?.arrayValue {
                return .object([("anyOf", .array(try any.enumerated().map { try normalize($1, path: "\(path).anyOf[\($0)]", top: false) }))])
            }
            return .object(schema.objectValue!.filter { $0.0 == "type" || $0.0 == "$ref" })
        }
        var out: [(String, JSONValue)] = []
        for key in kept[type == "integer" ? "number" : type] ?? ["type", "description"] {
            switch key {
            case "properties" where type == "object":
                let props = schema["properties"]?.objectValue ?? []
                guard top || !props.isEmpty else { throw ChatRequestError(param: path, message: "a strict schema's nested object needs properties") }
                out.append((key, .object(try props.map { ($0.0, try normalize($0.1, path: "\(path).properties.\($0.0)", top: false)) })))
            case "additionalProperties":
                if schema["additionalProperties"]?.boolValue == true {
                    throw ChatRequestError(param: "\(path).additionalProperties", message: "a strict schema's additionalProperties must be false")
                }
                out.append((key, .bool(false)))
            case "required":
                let names = schema["properties"]?.objectValue?.map(\.0) ?? []
                if let given = schema["required"], !given.isNull {
                    let list = given.arrayValue?.compactMap(\.stringValue) ?? []
                    guard Set(list) == Set(names), list.count == given.arrayValue?.count else {
                        throw ChatRequestError(param: "\(path).required", message: "a strict schema must require every property")
                    }
                }
                out.append((key, .array(names.map { .string($0) })))
            case "items":
                if let items = schema["items"] { out.append((key, try normalize(items, path: "\(path).items", top: false))) }
            default:
                if let v = schema[key] { out.append((key, v)) }
            }
        }
        return .object(out)
    }

    /// The tool's `function` object with its parameters normalised when it is strict.
    static func function(_ fn: JSONValue, path: String) throws -> JSONValue {
        guard fn["strict"]?.boolValue == true, let members = fn.objectValue else { return fn }
        let params = fn["parameters"].flatMap { $0.isNull ? nil : $0 } ?? .object([("type", .string("object"))])
        var out = members.filter { $0.0 != "parameters" }
        let normalized = try normalize(params, path: "\(path).parameters")
        if let i = members.firstIndex(where: { $0.0 == "parameters" }) {
            out.insert(("parameters", normalized), at: min(i, out.count))
        } else {
            out.append(("parameters", normalized))
        }
        return .object(out)
    }
}
