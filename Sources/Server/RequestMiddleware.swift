// RequestMiddleware.swift: wraps every request: gives it a record and an `x-request-id`
// (the client's, echoed, or a new one), turns every failure, including unknown routes
// (404) and wrong methods (405), into the error JSON of the route's dialect (Anthropic's
// for /v1/messages, OpenAI's elsewhere), logs internal errors (their text never reaches the
// client), and completes the record (its log line) unless a streamed body will.
import Hummingbird
import HTTPTypes

struct RequestMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let server: DSV4Server

    static let requestIDField = HTTPField.Name("x-request-id")!

    /// The client's request id when it is a sane token (1–128 visible ASCII characters).
    static func clientRequestID(_ headers: HTTPFields) -> String? {
        guard let v = headers[requestIDField], (1...128).contains(v.utf8.count),
              v.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        return v
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let route = DSV4Server.route(path)
        let id = Self.clientRequestID(request.headers) ?? DSV4Server.requestID("req-")
        let record = RequestRecord(requestID: id, endpoint: route?.endpoint ?? "unknown")
        var context = context
        context.record = record
        let dialect = APIDialect(path: path)
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let e = Self.apiError(error, request: request, route: route)
            record.update { $0.errorCode = e.code ?? e.type }
            server.logInternal(e, requestID: id)
            response = e.response(requestID: id, dialect: dialect)
            if e.status == .methodNotAllowed, let route { response.headers[.allow] = route.method.rawValue }
        }
        response.headers[Self.requestIDField] = id
        record.update { $0.status = Int(response.status.code) }
        if !record.snapshot.stream { server.finish(record) }
        return response
    }

    /// Any failure as an APIError: unknown routes 404, wrong methods 405, Hummingbird's own
    /// errors with their status, anything else an internal error.
    static func apiError(_ error: any Error, request: Request, route: (endpoint: String, method: HTTPRequest.Method)?) -> APIError {
        let path = request.uri.path
        switch error {
        case let e as APIError:
            return e
        case let e as HTTPError where e.status == .notFound:
            if let route, route.method != request.method {
                return APIError(.methodNotAllowed, "\(request.method.rawValue) is not allowed on \(path); use \(route.method.rawValue).", code: "method_not_allowed")
            }
            return APIError(.notFound, "Unknown route: \(request.method.rawValue) \(path)", code: "not_found")
        case let e as any HTTPResponseError where e.status.code < 500:
            return APIError(e.status, "\(e)")
        default:
            return .internal("\(error)")
        }
    }
}
