// DSV4Server.swift: the OpenAI-compatible HTTP server (Hummingbird 2) over the engine:
// routes, authentication, limits, error mapping, and the server's lifecycle.
import Engine
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import Tokenization

/// Everything `dsv4 serve` can set.
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 8000
    public var unixSocket: String?
    public var apiKeys: [String] = []
    public var servedModelNames: [String] = ["dsv4"]
    public var maxModelLen: Int
    public var maxBodyBytes = 16 << 20
    public var idleTimeoutSeconds: Int64 = 300
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Generation requests served or queued at once; more get 429.
    public var maxConcurrentRequests = 512
    /// Seconds between SSE keep-alive comments while a prompt is prefilled.
    public var keepAliveSeconds = 5

    public init(maxModelLen: Int) { self.maxModelLen = maxModelLen }
}

public final class DSV4Server: Sendable {
    let engine: EngineLoop
    let tokenizer: BPETokenizer
    let options: ServerOptions
    let metrics = ServerMetrics()
    let hiddenTokens: Set<Int>
    let created = Int(Date().timeIntervalSince1970)

    public init(engine: EngineLoop, tokenizer: BPETokenizer, options: ServerOptions) {
        self.engine = engine
        self.tokenizer = tokenizer
        self.options = options
        hiddenTokens = Set(engine.model.eosTokenIds)
    }

    var modelName: String { options.servedModelNames.first ?? "dsv4" }

    // MARK: - Routing

    public func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("health") { _, _ in Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status": "ok"}"#))) }
        router.get("metrics") { [self] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.render(engine: engine.metrics))))
        }
        router.get("v1/models") { [self] req, ctx in try await guarded("models", req, ctx) { _ in modelsResponse() } }
        router.post("v1/chat/completions") { [self] req, ctx in try await guarded("chat_completions", req, ctx) { try await chatCompletions($0, req) } }
        router.post("v1/completions") { [self] req, ctx in try await guarded("completions", req, ctx) { try await completions($0, req) } }
        router.post("v1/messages") { [self] req, ctx in try await guarded("messages", req, ctx) { try await messages($0, req) } }
        router.post("tokenize") { [self] req, ctx in try await guarded("tokenize", req, ctx) { try tokenizeEndpoint($0) } }
        router.post("detokenize") { [self] req, ctx in try await guarded("detokenize", req, ctx) { try detokenizeEndpoint($0) } }
        return router
    }

    /// Authentication, body reading and error mapping shared by every API route.
    func guarded(
        _ endpoint: String, _ request: Request, _ context: BasicRequestContext, _ handler: (JSONValue) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        var status = 200
        defer {
            metrics.record(endpoint: endpoint, status: status)
            let d = ContinuousClock.now - start
            metrics.observe("http_request_\(endpoint)", seconds: Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
        }
        do {
            try authenticate(request)
            var body: JSONValue = .object([])
            if request.method == .post {
                if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
                    throw APIError(.unsupportedMediaType, "Content-Type must be application/json, got \(type)")
                }
                let buffer: ByteBuffer
                do {
                    buffer = try await request.body.collect(upTo: options.maxBodyBytes)
                } catch is NIOTooManyBytesError {
                    throw APIError(.contentTooLarge, "the request body exceeds \(options.maxBodyBytes) bytes")
                }
                do {
                    body = try JSONValue.parse(Array(buffer.readableBytesView), maxDepth: 64)
                } catch let e as JSONParseError {
                    throw APIError.badRequest("We could not parse the JSON body of your request (\(e.description)).", code: "invalid_json")
                }
                guard case .object = body else { throw APIError.badRequest("the request body must be a JSON object") }
            }
            let r = try await handler(body)
            status = Int(r.status.code)
            return r
        } catch let e as APIError {
            status = Int(e.status.code)
            throw e
        } catch let e as ChatRequestError {
            status = 400
            throw APIError.badRequest(e.message, param: e.param)
        } catch let e as EngineError {
            let api = Self.map(e)
            status = Int(api.status.code)
            throw api
        }
    }

    func authenticate(_ request: Request) throws {
        guard !options.apiKeys.isEmpty else { return }
        var presented: String?
        if let auth = request.headers[.authorization], auth.hasPrefix("Bearer ") { presented = String(auth.dropFirst(7)) }
        if presented == nil, let key = request.headers.first(where: { $0.name.canonicalName == "x-api-key" })?.value { presented = key }
        guard let key = presented, options.apiKeys.contains(key) else {
            throw APIError(.unauthorized, "Incorrect API key provided.", type: "authentication_error", code: "invalid_api_key")
        }
    }

    static func map(_ e: EngineError) -> APIError {
        switch e {
        case .invalidParameter(let name, let message): APIError.badRequest(message, param: name, code: "invalid_value")
        case .emptyPrompt: APIError.badRequest(e.description, param: "prompt")
        case .tokenOutOfRange: APIError.badRequest(e.description, param: "prompt", code: "invalid_value")
        case .contextTooLong: APIError.badRequest(e.description, param: "messages", code: "context_length_exceeded")
        case .exceedsCache: APIError.badRequest(e.description, code: "context_length_exceeded")
        case .shuttingDown: APIError(.serviceUnavailable, e.description, type: "server_error")
        case .modelFailure: APIError(.internalServerError, e.description, type: "server_error")
        }
    }

    /// The model named in the request must be one we serve (no name: the default).
    func checkModel(_ body: JSONValue) throws {
        guard let m = body["model"], !m.isNull else { return }
        guard let name = m.stringValue else { throw APIError.badRequest("'model' must be a string", param: "model") }
        guard options.servedModelNames.contains(name) else {
            throw APIError(.notFound, "The model `\(name)` does not exist.", param: "model", code: "model_not_found")
        }
    }

    func admit() throws {
        guard metrics.inFlightCount < options.maxConcurrentRequests else {
            var e = APIError(.tooManyRequests, "the server is at capacity (\(options.maxConcurrentRequests) requests); retry shortly", type: "rate_limit_error", code: "overloaded")
            e.retryAfterSeconds = 1
            throw e
        }
    }

    func defaultMaxTokens(promptTokens: Int) throws -> Int {
        let room = options.maxModelLen - promptTokens
        guard room > 0 else {
            throw APIError.badRequest(
                "This model's maximum context length is \(options.maxModelLen) tokens. However, your messages resulted in \(promptTokens) tokens.",
                param: "messages", code: "context_length_exceeded")
        }
        return min(room, 4096)
    }

    func checkContext(promptTokens: Int, maxTokens: Int) throws {
        guard promptTokens + maxTokens <= options.maxModelLen else {
            throw APIError.badRequest(
                "This model's maximum context length is \(options.maxModelLen) tokens. However, you requested \(promptTokens + maxTokens) tokens (\(promptTokens) in the messages, \(maxTokens) in the completion). Please reduce the length of the messages or completion.",
                param: "messages", code: "context_length_exceeded")
        }
    }

    // MARK: - Small endpoints

    func modelsResponse() -> Response {
        let data = options.servedModelNames.map { name -> JSONValue in
            .object([
                ("id", .s(name)), ("object", .s("model")), ("created", .n(created)), ("owned_by", .s("dsv4")),
                ("root", .s(name)), ("max_model_len", .n(options.maxModelLen)), ("context_length", .n(options.maxModelLen)),
            ])
        }
        return json(.object([("object", .s("list")), ("data", .array(data))]))
    }

    func tokenizeEndpoint(_ body: JSONValue) throws -> Response {
        let text: String
        if let p = body["prompt"]?.stringValue {
            text = p
        } else if body["messages"] != nil {
            text = PromptRenderer.render(try ChatConversation(request: body))
        } else {
            throw APIError.badRequest("give 'prompt' (text) or 'messages' (a chat request)", param: "prompt")
        }
        let ids = tokenizer.encode(text)
        return json(.object([("tokens", .array(ids.map { .n($0) })), ("count", .n(ids.count)), ("max_model_len", .n(options.maxModelLen))]))
    }

    func detokenizeEndpoint(_ body: JSONValue) throws -> Response {
        guard let arr = body["tokens"]?.arrayValue else { throw APIError.badRequest("'tokens' must be an array of token ids", param: "tokens") }
        var ids: [Int] = []
        for (i, v) in arr.enumerated() {
            guard let id = v.intValue, id >= 0, id < tokenizer.vocabularySize else {
                throw APIError.badRequest("tokens[\(i)] is not a token id (0..<\(tokenizer.vocabularySize))", param: "tokens")
            }
            ids.append(id)
        }
        return json(.object([("prompt", .s(tokenizer.decode(ids)))]))
    }

    func json(_ v: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: v.promptJSON())))
    }

    static func requestID(_ prefix: String) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return prefix + String((0..<24).map { _ in alphabet.randomElement()! })
    }

    // MARK: - Running

    /// Serves until SIGINT/SIGTERM, then finishes or cancels in-flight requests and returns.
    public func run(logger: Logger) async throws {
        let router = makeRouter()
        let address: BindAddress = options.unixSocket.map { .unixDomainSocket(path: $0) } ?? .hostname(options.host, port: options.port)
        let http1 = HTTP1Channel.Configuration(idleTimeout: .seconds(options.idleTimeoutSeconds))
        let server: HTTPServerBuilder
        if let cert = options.tlsCertificate, let key = options.tlsKey {
            let certs = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
            let tls = TLSConfiguration.makeServerConfiguration(certificateChain: certs, privateKey: .file(key))
            server = try .tls(.http1(configuration: http1), tlsConfiguration: tls)
        } else {
            server = .http1(configuration: http1)
        }
        let app = Application(
            router: router, server: server,
            configuration: .init(address: address, serverName: "dsv4"),
            onServerRunning: { channel in
                logger.info("dsv4 serving \(self.options.servedModelNames) on \(channel.localAddress?.description ?? "?")")
            },
            logger: logger)
        try await app.runService()
        engine.shutdown()
    }
}
