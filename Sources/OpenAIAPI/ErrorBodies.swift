// ErrorBodies.swift: the error JSON of each API dialect: OpenAI's
// {"error": {"message", "type", "param", "code"}} and Anthropic's
// {"type": "error", "error": {"type", "message"}, "request_id"}.

/// OpenAI's error body.
public struct OpenAIErrorBody: Sendable, Equatable {
    public var message: String
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, `server_error`…
    public var type: String
    /// The request field at fault, as a JSON path (`messages[1].content`).
    public var param: String?
    public var code: String?

    public init(message: String, type: String, param: String? = nil, code: String? = nil) {
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var json: JSONValue {
        .object([
            ("error", .object([
                ("message", .string(message)), ("type", .string(type)),
                ("param", param.map { .string($0) } ?? .null), ("code", code.map { .string($0) } ?? .null),
            ])),
        ])
    }
}

/// Anthropic's error body (docs.anthropic.com/en/api/errors).
public struct AnthropicErrorBody: Sendable, Equatable {
    /// One of Anthropic's error types (see `errorType(status:)`).
    public var type: String
    public var message: String
    public var requestID: String?

    public init(type: String, message: String, requestID: String? = nil) {
        self.type = type
        self.message = message
        self.requestID = requestID
    }

    public var json: JSONValue {
        var members: [(String, JSONValue)] = [
            ("type", .string("error")), ("error", .object([("type", .string(type)), ("message", .string(message))])),
        ]
        if let requestID { members.append(("request_id", .string(requestID))) }
        return .object(members)
    }

    /// Anthropic's error type for an HTTP status: 401 authentication_error, 403
    /// permission_error, 404 not_found_error, 413 request_too_large, 429 rate_limit_error,
    /// 503 and 529 overloaded_error, other 5xx api_error, other 4xx invalid_request_error.
    public static func errorType(status: Int) -> String {
        switch status {
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 503, 529: "overloaded_error"
        case 500...: "api_error"
        default: "invalid_request_error"
        }
    }
}
