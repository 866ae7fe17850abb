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
import OpenAIAPI
import ServiceLifecycle
import UnixSignals
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
    /// Seconds a keep-alive connection may sit with no request before it is closed.
    public var idleTimeoutSeconds: Double = 300
    /// Seconds from a request's first byte until its head must be complete (nil: no limit).
    public var headerTimeoutSeconds: Double? = 30
    /// Seconds from a request's head until its body must be complete (nil: no limit).
    public var bodyTimeoutSeconds: Double? = 60
    /// Seconds in-flight requests may keep running after SIGTERM/SIGINT before they are cancelled.
    public var shutdownTimeoutSeconds: Double = 30
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Generation requests served or queued at once; more get 429.
    public var maxConcurrentRequests = 512
    /// Seconds a 429 asks the client to wait (Retry-After).
    public var retryAfterSeconds = 1
    /// Seconds between SSE keep-alive comments while a prompt is prefilled.
    public var keepAliveSeconds: Double = 5
    /// Stored Responses kept at most (least recently used dropped first).
    public var responsesStoreCount = 1000
    /// Bytes of stored Responses (response JSON plus conversation items) kept at most.
    public var responsesStoreBytes = 64 << 20
    /// Called (once, on a service-lifecycle task) when SIGTERM/SIGINT starts the graceful
    /// shutdown, before in-flight requests are drained: a composition root can check there
    /// that the engine can still finish them (see `EngineLoop.abort`).
    public var onShutdownSignal: (@Sendable () -> Void)?

    public init(maxModelLen: Int) { self.maxModelLen = maxModelLen }
}

/// The request context of every route: Hummingbird's, plus the connection (to notice a
/// client that goes away) and the request's record.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    var record: RequestRecord?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

public final class DSV4Server: Sendable {
    let engine: EngineLoop
    let tokenizer: BPETokenizer
    let options: ServerOptions
    let metrics = ServerMetrics()
    let logger: Logger
    let hiddenTokens: Set<Int>
    let created = Int(Date().timeIntervalSince1970)
    let responseStore: ResponseStore

    public init(engine: EngineLoop, tokenizer: BPETokenizer, options: ServerOptions, logger: Logger = Logger(label: "dsv4")) {
        self.engine = engine
        self.tokenizer = tokenizer
        self.options = options
        self.logger = logger
        hiddenTokens = Set(engine.model.eosTokenIds)
        responseStore = ResponseStore(maxCount: options.responsesStoreCount, maxBytes: options.responsesStoreBytes)
    }

    var modelName: String { options.servedModelNames.first ?? "dsv4" }

    // MARK: - Routing

    /// Every route: path → (endpoint name for metrics and logs, method).
    static let routes: [String: (endpoint: String, method: HTTPRequest.Method)] = [
        "/health": ("health", .get), "/metrics": ("metrics", .get), "/v1/models": ("models", .get),
        "/v1/chat/completions": ("chat_completions", .post), "/v1/completions": ("completions", .post),
        "/v1/messages": ("messages", .post), "/tokenize": ("tokenize", .post), "/detokenize": ("detokenize", .post),
        "/v1/messages/count_tokens": ("messages_count_tokens", .post), "/v1/responses": ("responses", .post),
        "/v1/responses/input_tokens": ("responses_input_tokens", .post),
    ]

    /// The route of a path (a trailing slash ignored); /v1/responses/{id} is "stored_response".
    static func route(_ path: String) -> (endpoint: String, method: HTTPRequest.Method)? {
        let p = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        if let r = routes[p] { return r }
        if p.hasPrefix("/v1/responses/"), !p.dropFirst(14).contains("/") { return ("stored_response", .get) }
        return nil
    }

    public func makeRouter() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: RequestMiddleware(server: self))
        router.get("health") { _, _ in Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status": "ok"}"#))) }
        router.get("metrics") { [self] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.render(engine: engine.metrics) + responseStore.metricsText)))
        }
        router.get("v1/models") { [self] req, ctx in try await guarded(req, ctx) { _, _ in modelsResponse() } }
        router.post("v1/chat/completions") { [self] req, ctx in try await guarded(req, ctx, admits: true) { try await chatCompletions($0, $1) } }
        router.post("v1/completions") { [self] req, ctx in try await guarded(req, ctx, admits: true) { try await completions($0, $1) } }
        router.post("v1/messages") { [self] req, ctx in try await guarded(req, ctx, admits: true) { try await messages($0, $1) } }
        router.post("v1/responses") { [self] req, ctx in try await guarded(req, ctx, admits: true) { try await responses($0, $1) } }
        router.post("v1/responses/input_tokens") { [self] req, ctx in try await guarded(req, ctx) { b, _ in try responsesInputTokens(b) } }
        router.get("v1/responses/:id") { [self] req, ctx in
            let id = ctx.parameters.get("id") ?? ""
            return try await guarded(req, ctx) { _, _ in try storedResponse(id) }
        }
        router.delete("v1/responses/:id") { [self] req, ctx in
            let id = ctx.parameters.get("id") ?? ""
            return try await guarded(req, ctx) { _, _ in try deleteResponse(id) }
        }
        router.post("v1/messages/count_tokens") { [self] req, ctx in try await guarded(req, ctx) { b, _ in try messagesCountTokens(b) } }
        router.post("tokenize") { [self] req, ctx in try await guarded(req, ctx) { b, _ in try tokenizeEndpoint(b) } }
        router.post("detokenize") { [self] req, ctx in try await guarded(req, ctx) { b, _ in try detokenizeEndpoint(b) } }
        return router
    }

    /// What an API handler gets besides the body: the request's record and its connection.
    struct Call: Sendable {
        let record: RequestRecord
        let channel: any Channel

        /// Runs `cancel` (once) if the client goes away before the request completes, and
        /// counts it as cancelled by the client.
        func onClientGone(_ server: DSV4Server, _ cancel: @escaping @Sendable () -> Void) {
            let record = record
            channel.closeFuture.whenComplete { _ in
                guard !record.isCompleted else { return }
                if record.clientGone() { server.metrics.clientCancelled() }
                cancel()
                // A stream whose body never ran (the connection closed first) completes here.
                if record.snapshot.stream { server.finish(record) }
            }
        }
    }

    /// Authentication, admission, body reading and error mapping shared by every API route.
    func guarded(
        _ request: Request, _ context: APIRequestContext, admits: Bool = false, _ handler: (JSONValue, Call) async throws -> Response
    ) async throws -> Response {
        let record = context.record ?? RequestRecord(requestID: Self.requestID("req-"), endpoint: "unknown")
        do {
            try authenticate(request)
            if admits { try admit(record) }
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
                } catch {
                    // Malformed framing (bad chunk sizes…) or a connection that broke mid-body.
                    throw APIError.badRequest("We could not read the body of your request (\(error)).", code: "invalid_body")
                }
                do {
                    body = try JSONValue.parse(Array(buffer.readableBytesView), maxDepth: 64)
                } catch let e as JSONParseError {
                    throw APIError.badRequest("We could not parse the JSON body of your request (\(e.description)).", code: "invalid_json")
                }
                guard case .object = body else { throw APIError.badRequest("the request body must be a JSON object") }
            }
            return try await handler(body, Call(record: record, channel: context.channel))
        } catch let e as ChatRequestError {
            throw APIError.badRequest(e.message, param: e.param)
        } catch let e as EngineError {
            throw Self.map(e)
        }
    }

    func authenticate(_ request: Request) throws {
        guard !options.apiKeys.isEmpty else { return }
        var presented: String?
        if let auth = request.headers[.authorization], auth.hasPrefix("Bearer ") { presented = String(auth.dropFirst(7)) }
        if presented == nil, let key = request.headers.first(where: { $0.name.canonicalName == "x-api-key" })?.value { presented = key }
        guard let key = presented, Self.keyMatches(key, options.apiKeys) else {
            throw APIError(.unauthorized, "Incorrect API key provided.", type: "authentication_error", code: "invalid_api_key")
        }
    }

    /// Whether `presented` is one of `keys`, compared in constant time: every key is
    /// compared, every byte of each, so the time taken says nothing about how much of a key
    /// a guess got right, nor which key matched.
    static func keyMatches(_ presented: String, _ keys: [String]) -> Bool {
        let p = Array(presented.utf8)
        var matched: UInt8 = 0
        for key in keys { matched |= constantTimeEqual(p, Array(key.utf8)) ? 1 : 0 }
        return matched == 1
    }

    /// Byte equality whose time depends only on `secret`'s length.
    static func constantTimeEqual(_ guess: [UInt8], _ secret: [UInt8]) -> Bool {
        var diff = UInt64(truncatingIfNeeded: guess.count ^ secret.count)
        for i in secret.indices {
            let g = i < guess.count ? guess[i] : 0
            diff |= UInt64(g ^ secret[i])
        }
        return diff == 0
    }

    static func map(_ e: EngineError) -> APIError {
        switch e {
        case .invalidParameter(let name, let message): APIError.badRequest(message, param: name, code: "invalid_value")
        case .emptyPrompt: APIError.badRequest(e.description, param: "prompt")
        case .tokenOutOfRange: APIError.badRequest(e.description, param: "prompt", code: "invalid_value")
        case .contextTooLong: APIError.badRequest(e.description, param: "messages", code: "context_length_exceeded")
        case .exceedsCache: APIError.badRequest(e.description, code: "context_length_exceeded")
        case .shuttingDown, .unavailable: APIError(.serviceUnavailable, e.description, type: "server_error")
        case .modelFailure: APIError.internal(e.description)
        }
    }

    /// Logs an internal error's detail with the request id (the client sees neither).
    func logInternal(_ e: APIError, requestID: String) {
        guard let detail = e.internalDetail else { return }
        logger.error("internal error", metadata: ["request_id": .string(requestID), "error": .string(detail)])
    }

    /// The model named in the request must be one we serve (no name: the default).
    func checkModel(_ body: JSONValue) throws {
        guard let m = body["model"], !m.isNull else { return }
        guard let name = m.stringValue else { throw APIError.badRequest("'model' must be a string", param: "model") }
        guard options.servedModelNames.contains(name) else {
            throw APIError(.notFound, "The model `\(name)` does not exist.", param: "model", code: "model_not_found")
        }
    }

    /// Takes a generation slot for the request (given back when it completes), or throws 429.
    func admit(_ record: RequestRecord) throws {
        guard metrics.tryAdmit(limit: options.maxConcurrentRequests) else {
            metrics.rejected()
            var e = APIError(
                .tooManyRequests, "The server is at capacity (\(options.maxConcurrentRequests) concurrent requests); retry shortly.",
                type: "rate_limit_error", code: "rate_limit_exceeded")
            e.retryAfterSeconds = options.retryAfterSeconds
            throw e
        }
        record.update { $0.admitted = true }
    }

    /// Completes a request once: gives back its slot, counts it, and writes its log line.
    func finish(_ record: RequestRecord) {
        let (first, s) = record.complete()
        guard first else { return }
        if s.admitted { metrics.release() }
        metrics.record(endpoint: record.endpoint, status: s.status)
        metrics.observe("http_request_\(record.endpoint)", seconds: (ContinuousClock.now - record.received).seconds)
        let quiet = record.endpoint == "health" || record.endpoint == "metrics"
        logger.log(level: quiet ? .debug : .info, "request", metadata: record.logMetadata(s))
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

    /// Serves until SIGINT/SIGTERM, then stops accepting connections, lets in-flight
    /// requests finish for up to `shutdownTimeoutSeconds`, cancels the rest, and returns.
    public func run() async throws {
        let router = makeRouter()
        let address: BindAddress = options.unixSocket.map { .unixDomainSocket(path: $0) } ?? .hostname(options.host, port: options.port)
        func amount(_ s: Double) -> TimeAmount { .nanoseconds(Int64(s * 1e9)) }
        let http1 = HTTP1Channel.Configuration(idleTimeout: amount(options.idleTimeoutSeconds))
        let header = options.headerTimeoutSeconds.map(amount), body = options.bodyTimeoutSeconds.map(amount)
        let logger = logger
        let tls: TLSConfiguration?
        if let cert = options.tlsCertificate, let key = options.tlsKey {
            let certs = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
            tls = TLSConfiguration.makeServerConfiguration(certificateChain: certs, privateKey: .file(key))
        } else {
            tls = nil
        }
        let server = HTTPServerBuilder { responder in
            let channel = DeadlineHTTP1Channel(
                responder: responder, configuration: http1, headerTimeout: header, bodyTimeout: body, logger: logger)
            if let tls { return try TLSChannel(channel, tlsConfiguration: tls) }
            return channel
        }
        let app = Application(
            router: router, server: server,
            configuration: .init(address: address, serverName: "dsv4"),
            onServerRunning: { channel in
                logger.info("dsv4 serving \(self.options.servedModelNames) on \(channel.localAddress?.description ?? "?")")
            },
            logger: logger)
        let service = DrainingService(
            app: app, engine: engine, grace: .seconds(options.shutdownTimeoutSeconds), onSignal: options.onShutdownSignal, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        engine.shutdown()
        logger.info("dsv4 stopped")
    }
}

/// The application, plus what graceful shutdown does to the engine: after the grace period
/// every request still running is cancelled, so its response ends and the server can stop.
struct DrainingService<App: Service>: Service {
    let app: App
    let engine: EngineLoop
    let grace: Duration
    let onSignal: (@Sendable () -> Void)?
    let logger: Logger

    func run() async throws {
        let engine = engine, grace = grace, onSignal = onSignal, logger = logger
        let (stopped, stop) = AsyncStream<Void>.makeStream()
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Waits for shutdown to begin, then for the grace period.
                    for await _ in stopped {}
                    guard (try? await Task.sleep(for: grace)) != nil else { return }
                    logger.notice("shutdown grace period over: cancelling the requests still running")
                    engine.shutdown()
                }
                try await app.run()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            logger.info("shutting down: no new connections; waiting for in-flight requests")
            onSignal?()
            stop.finish()
        }
    }
}
