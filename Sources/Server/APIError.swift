// APIError.swift: every failure the HTTP layer reports, as OpenAI's error JSON
// {"error": {"message", "type", "param", "code"}} with the matching HTTP status.
import Hummingbird
import OpenAIAPI

public struct APIError: Error, HTTPResponseError {
    public let status: HTTPResponse.Status
    public let message: String
    public let type: String
    public let param: String?
    public let code: String?
    public var retryAfterSeconds: Int?

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public static func badRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(.badRequest, message, param: param, code: code)
    }

    /// The OpenAI error body.
    public var body: String {
        JSONValue.object([
            ("error", .object([
                ("message", .string(message)), ("type", .string(type)),
                ("param", param.map { .string($0) } ?? .null), ("code", code.map { .string($0) } ?? .null),
            ])),
        ]).promptJSON()
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response(requestID: nil)
    }

    /// The error as an HTTP response (with Retry-After when set).
    func response(requestID: String?) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let r = retryAfterSeconds { headers[.retryAfter] = "\(r)" }
        if let requestID { headers[RequestMiddleware.requestIDField] = requestID }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
