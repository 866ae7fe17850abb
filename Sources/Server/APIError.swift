// APIError.swift: every failure the HTTP layer reports, with its HTTP status, rendered in
// the dialect of the route that failed: OpenAI's {"error": {"message", "type", "param",
// "code"}} or Anthropic's {"type": "error", "error": {"type", "message"}}.
import Hummingbird
import OpenAIAPI

public struct APIError: Error, HTTPResponseError {
    public let status: HTTPResponse.Status
    public let message: String
    public let type: String
    public let param: String?
    public let code: String?
    public var retryAfterSeconds: Int?
    /// What went wrong inside the server (500s): logged with the request id, never sent.
    public private(set) var internalDetail: String?

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

    /// A failure inside the server: the client sees a generic message with the request id;
    /// `detail` goes to the log only.
    public static func `internal`(_ detail: String) -> APIError {
        var e = APIError(.internalServerError, "The server had an error while processing your request.", type: "server_error")
        e.internalDetail = detail
        return e
    }

    /// The message a client sees: for internal errors, a generic one naming the request id.
    public func publicMessage(requestID: String?) -> String {
        guard internalDetail != nil, let requestID else { return message }
        return message + " Quote request id \(requestID) if you report it."
    }

    /// The OpenAI error body.
    public var body: String { body(requestID: nil, dialect: .openAI) }

    /// The error body in `dialect`.
    public func body(requestID: String?, dialect: APIDialect) -> String {
        let message = publicMessage(requestID: requestID)
        switch dialect {
        case .openAI:
            return OpenAIErrorBody(message: message, type: type, param: param, code: code).json.promptJSON()
        case .anthropic:
            return AnthropicErrorBody(type: AnthropicErrorBody.errorType(status: Int(status.code)), message: message, requestID: requestID)
                .json.promptJSON()
        }
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response(requestID: nil, dialect: APIDialect(path: request.uri.path))
    }

    /// The error as an HTTP response (with Retry-After when set).
    func response(requestID: String?, dialect: APIDialect) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let r = retryAfterSeconds { headers[.retryAfter] = "\(r)" }
        if let requestID { headers[RequestMiddleware.requestIDField] = requestID }
        let text = body(requestID: requestID, dialect: dialect)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Whose error shape a route speaks.
public enum APIDialect: Sendable {
    case openAI, anthropic

    /// Anthropic's for /v1/messages (and anything below it), OpenAI's elsewhere.
    public init(path: String) {
        self = path == "/v1/messages" || path.hasPrefix("/v1/messages/") ? .anthropic : .openAI
    }
}

extension APIError: CustomStringConvertible {
    /// `param: message` (as `dsv4 render` prints a request it cannot use).
    public var description: String { param.map { "\($0): \(message)" } ?? message }
}
