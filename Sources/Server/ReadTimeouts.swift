// ReadTimeouts.swift: header and body read deadlines for HTTP/1 connections.
// Hummingbird's idle timeout only counts decoded HTTP parts, so a client that drips a
// request head (or body) a byte at a time is never cut off. Here each request head must
// arrive within `headerTimeout` of its first byte, and its body within `bodyTimeout` of the
// head; otherwise the connection is closed. Idle keep-alive connections (no bytes at all)
// are left to the idle timeout.
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

/// The read phase of a connection's current request, and the timer guarding it. Lives on
/// the connection's event loop; shared by the two handlers below.
final class RequestReadDeadline {
    enum Phase { case idle, head, body }

    private(set) var phase = Phase.idle
    private var generation = 0
    private var timer: Scheduled<Void>?
    let headerTimeout: TimeAmount?
    let bodyTimeout: TimeAmount?
    let logger: Logger

    init(headerTimeout: TimeAmount?, bodyTimeout: TimeAmount?, logger: Logger) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.logger = logger
    }

    /// Enters `next`, replacing the running timer with that phase's deadline.
    func enter(_ next: Phase, context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        phase = next
        generation += 1
        let limit: TimeAmount? = switch next {
        case .idle: nil
        case .head: headerTimeout
        case .body: bodyTimeout
        }
        guard let limit else { return }
        let expected = generation
        let channel = context.channel
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: limit) { [self] in
            guard generation == expected else { return }
            logger.notice("closing a connection that did not send its request \(next == .head ? "head" : "body") in time", metadata: [
                "remote": "\(channel.remoteAddress?.description ?? "?")", "timeout_ms": "\(limit.nanoseconds / 1_000_000)",
            ])
            channel.close(promise: nil)
        }
    }

    func cancel() {
        timer?.cancel()
        timer = nil
        generation += 1
    }
}

/// Before the HTTP decoder: the first bytes of a request start its head deadline.
final class RequestBytesWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let deadline: RequestReadDeadline

    init(_ deadline: RequestReadDeadline) { self.deadline = deadline }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if deadline.phase == .idle, unwrapInboundIn(data).readableBytes > 0 { deadline.enter(.head, context: context) }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline.cancel()
        context.fireChannelInactive()
    }

    /// NOTE: Hummingbird allows remote half-closure, so a client that goes away mid-request
    /// only shows up as end of input, which nothing watches while a response is computed.
    /// HTTP/1 clients do not half-close and wait for an answer, so end of input means the
    /// client is gone: close the channel, whose close future cancels the request's work.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent {
            deadline.cancel()
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// After the HTTP decoder: a complete head starts the body deadline, the request's end
/// clears it.
final class RequestPartsWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    let deadline: RequestReadDeadline

    init(_ deadline: RequestReadDeadline) { self.deadline = deadline }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: deadline.enter(.body, context: context)
        case .body: break
        case .end: deadline.enter(.idle, context: context)
        }
        context.fireChannelRead(data)
    }
}

/// Hummingbird's HTTP/1 child channel with the read deadlines in its pipeline.
struct DeadlineHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = HTTP1Channel.Value
    let responder: HTTPChannelHandler.Responder
    let configuration: HTTP1Channel.Configuration
    let headerTimeout: TimeAmount?
    let bodyTimeout: TimeAmount?
    let logger: Logger

    func setup(channel: any Channel, logger setupLogger: Logger) -> EventLoopFuture<Value> {
        // NOTE: child channels are set up on their own event loop, as NIOLoopBound requires.
        let deadline = NIOLoopBound(
            RequestReadDeadline(headerTimeout: headerTimeout, bodyTimeout: bodyTimeout, logger: logger), eventLoop: channel.eventLoop)
        var config = configuration
        let extra = configuration.additionalChannelHandlers
        config.additionalChannelHandlers = { [deadline] in
            let watcher: any RemovableChannelHandler = RequestPartsWatcher(deadline.value)
            return [watcher] + extra()
        }
        do {
            try channel.pipeline.syncOperations.addHandler(RequestBytesWatcher(deadline.value))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return HTTP1Channel(responder: responder, configuration: config).setup(channel: channel, logger: setupLogger)
    }

    func handle(value: Value, logger: Logger) async {
        await handleHTTP(asyncChannel: value, logger: logger)
    }
}
