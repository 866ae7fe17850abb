// ServeCommand.swift: `dsv4 serve`, the OpenAI- and Anthropic-compatible server.
import ArgumentParser
import DeepSeekV4
import Engine
import ExpertParallel
import Foundation
import Logging
import ModelRuntime
import PagedCache
import Server
import Tensors
import Tokenization

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over HTTP: OpenAI Chat Completions / Completions, Anthropic Messages, metrics.")

    @Option(help: "Model folder (config.json, safetensors, tokenizer.json). Default: the bundled dsv4-tiny.") var model: String?
    @Option var host = "127.0.0.1"
    @Option var port = 8000
    @Option(name: .customLong("unix-socket"), help: "Listen on a Unix domain socket instead of TCP.") var unixSocket: String?
    @Option(name: .customLong("api-key"), help: "Accepted API key (Bearer or x-api-key); repeatable. None: no authentication.") var apiKeys: [String] = []
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain (with --tls-key).") var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key.") var tlsKey: String?
    @Option(name: .customLong("served-model-name"), help: "Model name(s) the API answers to; repeatable.") var servedModelNames: [String] = []
    @Option(name: .customLong("max-model-len"), help: "Context length limit (default: the model's).") var maxModelLen: Int?
    @Option(name: .customLong("kv-cache-memory"), help: "KV/state cache budget in bytes.") var kvCacheMemory = 2 << 30
    @Option(name: .customLong("kv-cache-dtype"), help: kvCacheDTypeHelp)
    var kvCacheDType: KVCacheDType = .f32
    @Option(name: .customLong("cache-dir"), help: "Directory for a prefix cache on disk: entries evicted from RAM and every entry at shutdown go there, and survive restarts.")
    var cacheDir: String?
    @Option(name: .customLong("cache-disk-bytes"), help: "Bytes the --cache-dir entries may take (least recently used go first).")
    var cacheDiskBytes = 16 << 30
    @Option(help: "Kernel threads (default: all CPUs).") var threads: Int?
    @Option(name: .customLong("max-num-batched-tokens"), help: "Tokens computed per engine step.") var maxBatchedTokens = 512
    @Option(name: .customLong("max-num-seqs"), help: "Sequences in flight at most.") var maxSequences = 64
    @Option(name: .customLong("max-concurrent-requests"), help: "Generation requests served or queued at once; more get 429 with Retry-After.")
    var maxConcurrentRequests = 512
    @Option(name: .customLong("header-timeout"), help: "Seconds from a request's first byte until its headers must be complete (0: no limit).")
    var headerTimeout = 30.0
    @Option(name: .customLong("body-timeout"), help: "Seconds from a request's headers until its body must be complete (0: no limit).")
    var bodyTimeout = 60.0
    @Option(name: .customLong("idle-timeout"), help: "Seconds an idle keep-alive connection is kept open.") var idleTimeout = 300.0
    @Option(name: .customLong("shutdown-timeout"), help: "Seconds in-flight requests may finish after SIGTERM/SIGINT before they are cancelled.")
    var shutdownTimeout = 30.0
    @Option(name: .customLong("keep-alive-interval"), help: "Seconds between SSE keep-alive comments while a prompt is prefilled.")
    var keepAliveInterval = 5.0
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (one line per request at info).")
    var logLevel = "info"
    @Option(name: .customLong("log-format"), help: "logfmt or json (to stderr).") var logFormat = "logfmt"
    @Option(name: .customLong("responses-store-count"), help: "Stored Responses (store: true) kept at most; least recently used go first.")
    var responsesStoreCount = 1000
    @Option(name: .customLong("responses-store-bytes"), help: "Bytes of stored Responses kept at most.") var responsesStoreBytes = 64 << 20
    @OptionGroup var parallel: ExpertParallelOptions
    @Option(
        name: .customLong("expert-stall-timeout"),
        help: "Under mpirun: seconds an MoE layer may wait for the worker ranks before rank 0 fails the requests (503) and exits non-zero.")
    var expertStallTimeout = 120.0
    @Option(name: .customLong("fake-script"), help: ArgumentHelp(
        "Testing aid: answer every request with this file's text (tokenized), then EOS, instead of running the model.", visibility: .hidden))
    var fakeScript: String?

    func validate() throws {
        if !(expertStallTimeout > 0 && expertStallTimeout < 1e7) { throw ValidationError("--expert-stall-timeout must be a positive number of seconds") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if port < 0 || port > 65535 { throw ValidationError("--port must be in 0...65535") }
        if let problem = ProcessMemory.cacheBudgetProblem(kvCacheMemory) { throw ValidationError(problem) }
        if cacheDiskBytes <= 0 { throw ValidationError("--cache-disk-bytes must be positive") }
        if cacheDir?.isEmpty == true { throw ValidationError("--cache-dir must name a directory") }
        if maxConcurrentRequests < 1 { throw ValidationError("--max-concurrent-requests must be at least 1") }
        for (name, v) in [("--header-timeout", headerTimeout), ("--body-timeout", bodyTimeout), ("--shutdown-timeout", shutdownTimeout)]
        where !(v >= 0 && v < 1e7) {
            throw ValidationError("\(name) must be a number of seconds >= 0")
        }
        if !(idleTimeout > 0 && idleTimeout < 1e7) { throw ValidationError("--idle-timeout must be a positive number of seconds") }
        if !(keepAliveInterval > 0 && keepAliveInterval < 1e7) { throw ValidationError("--keep-alive-interval must be a positive number of seconds") }
        if responsesStoreCount < 0 || responsesStoreBytes < 0 { throw ValidationError("--responses-store-count and --responses-store-bytes must be >= 0") }
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if LogFormat(rawValue: logFormat) == nil { throw ValidationError("--log-format must be logfmt or json") }
    }

    func run() async throws {
        let dir = model ?? defaultModelDirectory()
        KernelThreads.start(count: threads)
        let m: DeepSeekV4Model
        let tok: BPETokenizer
        do {
            m = try DeepSeekV4Model(directory: dir, kvCacheDType: kvCacheDType)
            tok = try BPETokenizer(path: dir)
        } catch {
            fail(model == nil ? "\(error)\n(the default model is created by `bash tools/setup.sh`)" : "\(error)")
        }
        guard tok.vocabularySize <= m.vocabSize else {
            fail("tokenizer has \(tok.vocabularySize) tokens but the model only \(m.vocabSize)")
        }
        // Under mpirun the worker ranks stay in here until rank 0 stops.
        let dispatcher = attachExpertParallel(to: m)
        var served: any CausalLM = m
        if let fakeScript {
            guard let text = try? String(contentsOfFile: fakeScript, encoding: .utf8) else { fail("cannot read \(fakeScript)") }
            served = ScriptedModel(script: tok.encode(text), vocabSize: m.vocabSize, eos: m.eosTokenIds.first ?? 1, maxPositions: m.maxPositions)
        }
        let level = Logger.Level(rawValue: logLevel)!, format = LogFormat(rawValue: logFormat)!
        let logger = Logger(label: "dsv4") { label in StructuredLogHandler(label: label, level: level, format: format) }
        let disk = openDiskTier(layout: served.cacheLayout, modelDirectory: dir, scripted: fakeScript != nil, logger: logger)
        let engine = EngineLoop(
            model: served, configuration: EngineConfiguration(cacheBytes: kvCacheMemory, tokenBudget: maxBatchedTokens, maxRunning: maxSequences),
            detokenize: { tok.decode($0) }, disk: disk)
        var options = ServerOptions(maxModelLen: min(maxModelLen ?? m.maxPositions, m.maxPositions))
        options.host = host
        options.port = port
        options.unixSocket = unixSocket
        options.apiKeys = apiKeys
        options.tlsCertificate = tlsCert
        options.tlsKey = tlsKey
        let base = URL(fileURLWithPath: dir).lastPathComponent
        options.servedModelNames = servedModelNames.isEmpty ? [base, "deepseek-v4-flash", "deepseek-v4-pro", "deepseek-chat", "deepseek-reasoner"] : servedModelNames
        options.maxConcurrentRequests = maxConcurrentRequests
        options.headerTimeoutSeconds = headerTimeout > 0 ? headerTimeout : nil
        options.bodyTimeoutSeconds = bodyTimeout > 0 ? bodyTimeout : nil
        options.idleTimeoutSeconds = idleTimeout
        options.shutdownTimeoutSeconds = shutdownTimeout
        options.keepAliveSeconds = keepAliveInterval
        options.responsesStoreCount = responsesStoreCount
        options.responsesStoreBytes = responsesStoreBytes
        if let dispatcher {
            let watch = WorkerWatch(dispatcher: dispatcher, engine: engine, logger: logger, stallSeconds: expertStallTimeout)
            watch.start()
            options.onShutdownSignal = { watch.shutdownSignalled() }
        }
        let server = DSV4Server(engine: engine, tokenizer: tok, options: options, logger: logger)
        do { try await server.run() } catch { fail("\(error)") }
        // The engine has stopped: the workers may go.
        if let dispatcher {
            dispatcher.quit()
            logExpertParallelTraffic(dispatcher, logger: logger)
        }
    }

    /// The disk tier of --cache-dir, if given; exits non-zero when another server holds it.
    private func openDiskTier(layout: CacheLayout, modelDirectory: String, scripted: Bool, logger: Logger) -> DiskTier? {
        guard let cacheDir else { return nil }
        var identity = modelIdentity(directory: modelDirectory, dtype: kvCacheDType)
        if scripted { identity += ";scripted=\(fakeScript ?? "")" }
        do {
            return try DiskTier(directory: cacheDir, budgetBytes: cacheDiskBytes, layout: layout, modelIdentity: identity) { logger.notice("\($0)") }
        } catch {
            fail("\(error)")
        }
    }
}
