// SamplingParameters.swift: how a request's tokens are chosen, and its validation.

/// Sampling controls of one request (OpenAI / vLLM semantics).
public struct SamplingParameters: Sendable, Equatable {
    /// 0 samples greedily.
    public var temperature: Float = 1
    /// Nucleus mass in (0, 1].
    public var topP: Float = 1
    /// Keep the k most likely tokens; 0 (or -1) disables.
    public var topK: Int = 0
    /// Drop tokens whose probability is below minP × the top probability; 0 disables.
    public var minP: Float = 0
    /// OpenAI: logit -= presence·[count > 0] + frequency·count, over generated tokens.
    public var presencePenalty: Float = 0
    public var frequencyPenalty: Float = 0
    /// vLLM/transformers: logits of tokens seen in prompt or output are divided (if > 0) or
    /// multiplied (if < 0) by this; 1 disables.
    public var repetitionPenalty: Float = 1
    /// Added to the logits of the given token ids.
    public var logitBias: [Int: Float] = [:]
    /// Same seed + same request = same tokens, batched or not.
    public var seed: UInt64?
    /// Tokens to generate at most.
    public var maxTokens: Int = 16
    /// Generation stops after any of these token ids (they are part of the output).
    public var stopTokenIds: [Int] = []
    /// Generation stops once the text contains any of these strings.
    public var stop: [String] = []
    /// Keep going past the model's end-of-sequence tokens.
    public var ignoreEOS: Bool = false
    /// Report the chosen token's log-probability, and this many alternatives.
    public var logprobs: Bool = false
    public var topLogprobs: Int = 0
    /// Completions to generate from the prompt.
    public var n: Int = 1

    public init() {}

    /// Largest accepted `n` and `topLogprobs`.
    public static let maxN = 16
    public static let maxTopLogprobs = 20

    /// Checks every value; throws naming the first bad parameter.
    public func validate(vocabSize: Int) throws {
        func bad(_ p: String, _ m: String) -> EngineError { .invalidParameter(name: p, message: m) }
        guard temperature.isFinite, temperature >= 0 else { throw bad("temperature", "must be a number >= 0, got \(temperature)") }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw bad("top_p", "must be in (0, 1], got \(topP)") }
        guard topK >= -1 else { throw bad("top_k", "must be -1, 0 or positive, got \(topK)") }
        guard minP.isFinite, minP >= 0, minP <= 1 else { throw bad("min_p", "must be in [0, 1], got \(minP)") }
        guard presencePenalty.isFinite, abs(presencePenalty) <= 2 else { throw bad("presence_penalty", "must be in [-2, 2], got \(presencePenalty)") }
        guard frequencyPenalty.isFinite, abs(frequencyPenalty) <= 2 else { throw bad("frequency_penalty", "must be in [-2, 2], got \(frequencyPenalty)") }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else { throw bad("repetition_penalty", "must be > 0, got \(repetitionPenalty)") }
        guard maxTokens > 0 else { throw bad("max_tokens", "must be at least 1, got \(maxTokens)") }
        guard n >= 1, n <= Self.maxN else { throw bad("n", "must be between 1 and \(Self.maxN), got \(n)") }
        guard topLogprobs >= 0, topLogprobs <= Self.maxTopLogprobs else { throw bad("top_logprobs", "must be between 0 and \(Self.maxTopLogprobs), got \(topLogprobs)") }
        for (id, b) in logitBias {
            guard id >= 0, id < vocabSize else { throw bad("logit_bias", "token id \(id) is outside the vocabulary (0..<\(vocabSize))") }
            guard b.isFinite, abs(b) <= 100 else { throw bad("logit_bias", "bias for token \(id) must be in [-100, 100], got \(b)") }
        }
        for id in stopTokenIds where id < 0 || id >= vocabSize {
            throw bad("stop_token_ids", "token id \(id) is outside the vocabulary (0..<\(vocabSize))")
        }
        guard stop.count <= 16 else { throw bad("stop", "at most 16 stop strings, got \(stop.count)") }
        guard !stop.contains("") else { throw bad("stop", "stop strings must not be empty") }
    }
}

/// Errors the engine reports for a request.
public enum EngineError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A sampling or request parameter is invalid.
    case invalidParameter(name: String, message: String)
    /// The prompt is empty.
    case emptyPrompt
    /// A prompt token id is outside the vocabulary.
    case tokenOutOfRange(index: Int, id: Int, vocabSize: Int)
    /// prompt + max_tokens exceeds the model's context.
    case contextTooLong(promptTokens: Int, maxTokens: Int, maximum: Int)
    /// The request can never fit in the cache budget; `detail` breaks its footprint down.
    case exceedsCache(neededBytes: Int, budgetBytes: Int, detail: String)
    /// The engine is shutting down.
    case shuttingDown
    /// The model failed.
    case modelFailure(String)
    /// The server can no longer compute (e.g. an expert-parallel worker process was lost);
    /// it is stopping. `reason` says why.
    case unavailable(reason: String)

    public var description: String {
        switch self {
        case .invalidParameter(let n, let m): "invalid '\(n)': \(m)"
        case .emptyPrompt: "the prompt is empty"
        case .tokenOutOfRange(let i, let id, let v): "prompt token \(id) at index \(i) is outside the vocabulary (0..<\(v))"
        case .contextTooLong(let p, let m, let x):
            "this model's maximum context length is \(x) tokens; the request needs \(p + m) (\(p) in the prompt, \(m) to generate)"
        case .exceedsCache(let n, let b, let d):
            "the request needs \(n) bytes of KV cache (\(d)) but the cache holds \(b) bytes; lower max_tokens or n, shorten the prompt, or raise --kv-cache-memory"
        case .shuttingDown: "the server is shutting down"
        case .modelFailure(let m): "model failure: \(m)"
        case .unavailable(let r): "the server cannot compute any more and is stopping: \(r)"
        }
    }
}
