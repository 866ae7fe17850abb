// JSONSchemaNode.swift: the subset of JSON Schema that `response_format: json_schema`
// enforces while decoding: type (one or several), properties / required /
// additionalProperties, items, enum and const. Other keywords are accepted and not enforced.
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

    /// Parses a schema; `$ref`, combinators and the like are rejected with a clear message.
    static func parse(_ v: JSONValue, path: String = "response_format.json_schema.schema") throws -> SchemaNode {
        guard case .object(let members) = v else { throw APIError.badRequest("the schema must be an object", param: path) }
        for (k, _) in members where ["$ref", "anyOf", "oneOf", "allOf", "not", "if", "patternProperties"].contains(k) {
            throw APIError.badRequest("schema keyword '\(k)' is not supported for constrained decoding", param: path)
        }
        var types: Set<String>?
        switch v["type"] {
        case .string(let t)?: types = [t]
        case .array(let a)?: types = Set(a.compactMap(\.stringValue))
        default: types = nil
        }
        var literals: [[UInt8]]?
        if let e = v["enum"]?.arrayValue { literals = e.map(literal) }
        if let c = v["const"] { literals = [literal(c)] }
        var props: [(String, SchemaNode)] = []
        if let p = v["properties"]?.objectValue {
            for (k, s) in p { props.append((k, try parse(s, path: "\(path).properties.\(k)"))) }
            if types == nil { types = ["object"] }
        }
        let required = Set((v["required"]?.arrayValue ?? []).compactMap(\.stringValue))
        var additional = true
        if case .bool(let b)? = v["additionalProperties"] { additional = b }
        // Strict structured outputs (OpenAI's default for json_schema) close objects that list properties.
        if !props.isEmpty, v["additionalProperties"] == nil { additional = false }
        let items = try v["items"].map { try parse($0, path: "\(path).items") }
        return SchemaNode(types: types, properties: props, required: required, additionalProperties: additional, items: items, literals: literals)
    }
}
