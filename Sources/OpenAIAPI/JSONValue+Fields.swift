// JSONValue+Fields.swift: typed reads of request fields and short constructors for the
// response JSON every API handler builds.

extension JSONValue {
    /// The number as a double, or nil when this is not a number.
    public var doubleValue: Double? { if case .number(let n) = self { return Double(n) } else { return nil } }
    /// An exact integer, or nil.
    public var intValue: Int? {
        guard case .number(let n) = self, let d = Double(n), d == d.rounded(), abs(d) < 9e15 else { return nil }
        return Int(d)
    }

    /// A string value.
    public static func s(_ v: String) -> JSONValue { .string(v) }
    /// An integer value.
    public static func n(_ v: Int) -> JSONValue { .number(String(v)) }
    /// A float value (-9999.0 for a non-finite one, as vLLM reports a -inf logprob).
    public static func f(_ v: Float) -> JSONValue { .number(v.isFinite ? "\(v)" : "-9999.0") }
}
