// JSONSchemaNode.swift: the subset of JSON Schema that `response_format: json_schema`
// enforces while decoding: type (one or several), properties / required /
// additionalProperties (a boolean), items (one schema), enum and const; annotations
// (title, description, default, examples, $schema, $id, $comment, $defs, definitions) are
// allowed. Every other keyword is refused with a 400 naming it and where it is: a keyword
// the decoder cannot honour is never silently ignored.
import OpenAIAPI

final class SchemaNode: @unchecked Sendable {
    /// Allowed JSON types ("object", "array", "string", "number", "integer", "boolean", "null"); nil: any.
    let types: Set<String>?
    let properties: [(String, SchemaNode)]
    let required: Set<String>
    /// Whether keys outside `properties` are allowed.
    let additionalProperties: Bool
    let items: SchemaNode?
    /// Allowed values as compact JSON text (enum / const); nil: any.
    let literals: [[UInt8]]?

    init(types: Set<String>?, properties: [(String, SchemaNode)] = [], required: Set<String> = [], additionalProperties: Bool = true,
         items: SchemaNode? = nil, literals: [[UInt8]]? = nil) {
        self.types = types
        self.properties = properties
        self.required = required
        self.additionalProperties = additionalProperties
        self.items = items
        self.literals = literals
    }

    func property(_ name: String) -> SchemaNode? { properties.first { $0.0 == name }?.1 }

    /// Compact JSON as a model would write it (", " and ": " separators).
    static func literal(_ v: JSONValue) -> [UInt8] { Array(v.promptJSON().utf8) }

    /// Keywords the constraint enforces.
    static let enforced: Set<String> = ["type", "properties", "required", "additionalProperties", "items", "enum", "const"]
    /// Keywords that describe and constrain nothing.
    static let annotations: Set<String> = ["title", "description", "default", "examples", "$schema", "$id", "$comment", "$defs", "definitions"]
    static let typeNames: Set<String> = ["object", "array", "string", "number", "integer", "boolean", "null"]

    /// Parses a schema; every keyword outside `enforced` and `annotations` (`pattern`,
    /// `minimum`, `format`, `$ref`, `anyOf`…) is rejected with its location.
    static func parse(_ v: JSONValue, path: String = "response_format.json_schema.schema") throws -> SchemaNode {
        guard case .object(let members) = v else { throw APIError.badRequest("the schema must be an object", param: path) }
        for (k, _) in members where !enforced.contains(k) && !annotations.contains(k) {
            throw APIError.badRequest(
                "schema keyword '\(k)' is not supported for constrained decoding (supported: \(enforced.sorted().joined(separator: ", ")))",
                param: "\(path).\(k)", code: "unsupported_schema_keyword")
        }
        let types = try parseTypes(v["type"], path: "\(path).type")
        var literals: [[UInt8]]?
        if let e = v["enum"] {
            guard let list = e.arrayValue, !list.isEmpty else { throw APIError.badRequest("'enum' must be a non-empty array", param: "\(path).enum") }
            literals = list.map(literal)
        }
        if let c = v["const"] { literals = [literal(c)] }
        var props: [(String, SchemaNode)] = []
        if let p = v["properties"] {
            guard let members = p.objectValue else { throw APIError.badRequest("'properties' must be an object", param: "\(path).properties") }
            for (k, s) in members { props.append((k, try parse(s, path: "\(path).properties.\(k)"))) }
        }
        var required: Set<String> = []
        if let r = v["required"] {
            guard let list = r.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                throw APIError.badRequest("'required' must be an array of strings", param: "\(path).required")
            }
            required = Set(list.compactMap(\.stringValue))
        }
        var additional = true
        switch v["additionalProperties"] {
        case nil: additional = props.isEmpty  // strict structured outputs (OpenAI's default) close objects that list properties
        case .bool(let b)?: additional = b
        default: throw APIError.badRequest("'additionalProperties' must be a boolean here (a schema is not supported)", param: "\(path).additionalProperties")
        }
        var items: SchemaNode?
        if let i = v["items"] {
            guard case .object = i else { throw APIError.badRequest("'items' must be one schema (tuples are not supported)", param: "\(path).items") }
            items = try parse(i, path: "\(path).items")
        }
        let objectish = !props.isEmpty || !required.isEmpty || v["additionalProperties"] != nil
        return SchemaNode(
            types: types ?? (objectish ? ["object"] : nil), properties: props, required: required, additionalProperties: additional,
            items: items, literals: literals)
    }

    /// `type`: one name or a non-empty array of names; nil when absent.
    static func parseTypes(_ v: JSONValue?, path: String) throws -> Set<String>? {
        guard let v else { return nil }
        let names = v.stringValue.map { [$0] } ?? v.arrayValue?.compactMap(\.stringValue)
        guard let names, !names.isEmpty, names.count == (v.arrayValue?.count ?? 1), names.allSatisfy({ typeNames.contains($0) }) else {
            throw APIError.badRequest("'type' must be one of \(typeNames.sorted().joined(separator: ", ")) or an array of them", param: path)
        }
        return Set(names)
    }
}
