// EngineCore.swift: executes the scheduler's plans: opens and forks sequences in the cache,
// runs one batched model step, samples, and reports events. Synchronous and single-threaded
// (EngineLoop drives it from one thread); tests drive it directly.
import ModelRuntime
import PagedCache

/// Why a choice stopped.
public enum FinishReason: String, Sendable, Equatable {
    /// An end-of-sequence token, a stop token id or a stop string.
    case stop
    /// max_tokens reached.
    case length
    /// The client went away or the request was cancelled.
    case cancelled
}

/// What a request's stream receives.
public enum EngineEvent: Sendable, Equatable {
    /// The prompt was admitted; `cachedTokens` of it came from the prefix cache.
    case started(promptTokens: Int, cachedTokens: Int)
    /// A new token of `choice`.
    case token(choice: Int, SampledToken)
    /// `choice` is done; `stopString` is the matched stop string, if any.
    case finished(choice: Int, reason: FinishReason, stopString: String?)
    /// The request failed before or while running.
    case failed(EngineError)
    /// After a step that computed part of the prompt (and not all of it): `processed` of the
    /// prompt's `total` tokens are in the cache, `cached` of them from the prefix cache.
    case prefill(processed: Int, total: Int, cached: Int)
}

/// Engine settings.
public struct EngineConfiguration: Sendable {
    /// KV/state cache budget in bytes.
    public var cacheBytes: Int
    /// Tokens per step at most.
    public var tokenBudget: Int
    /// Sequences in flight at most.
    public var maxRunning: Int
    /// A request waiting longer than this is admitted ahead of running prefill chunks
    /// (Scheduler rule 5); nil keeps strict first-come first-served admission.
    public var maxQueueDelay: Duration?

    public init(cacheBytes: Int = 1 << 30, tokenBudget: Int = 512, maxRunning: Int = 64, maxQueueDelay: Duration? = .seconds(2)) {
        self.cacheBytes = cacheBytes
        self.tokenBudget = tokenBudget
        self.maxRunning = maxRunning
        self.maxQueueDelay = maxQueueDelay
    }
}

/// Counters for metrics.
public struct EngineCounters: Sendable, Equatable {
    public var steps = 0
    public var promptTokens = 0
    public var cachedPromptTokens = 0
    public var computedTokens = 0
    public var generatedTokens = 0
    public var preemptions = 0
    public var lastBatchSize = 0
    public var lastBatchTokens = 0
    /// Requests admitted (first scheduled), and their summed and longest wait from arrival
    /// to admission on the engine clock.
    public var admittedRequests = 0
    public var totalQueueWait: Duration = .zero
    public var maxQueueWait: Duration = .zero
}

public final class EngineCore {
    public let model: any CausalLM
    public let cache: CacheManager
    public let configuration: EngineConfiguration
    public let clock: any EngineClock
    public private(set) var counters = EngineCounters()
    let scheduler: Scheduler
    /// Text of generated tokens, for stop strings (nil: stop strings are not checked).
    let detokenize: (([Int]) -> String)?

    final class Choice {
        var tokens: [Int]
        var computed = 0
        var sequence: SequenceID?
        var generated: [Int] = []
        var finished: FinishReason?
        var rng: SeededGenerator
        var counts: [Int: Int] = [:]
        var seen: Set<Int>
        var constraint: (any TokenConstraint)?
        var stops = StopMatcher()
        /// Preempted: its cache was swapped out and it resumes from there.
        var swapped = false

        init(tokens: [Int], rng: SeededGenerator, seen: Set<Int>) {
            self.tokens = tokens
            self.rng = rng
            self.seen = seen
        }
    }

    final class Request {
        let id: Int
        let arrival: Int
        let arrivalTime: Duration
        let prompt: [Int]
        let parameters: SamplingParameters
        /// Seed of choice 0; choice k uses a seed derived from it.
        let seed: UInt64
        var choices: [Choice]
        var started = false
        /// Prompt tokens the first open found in the prefix cache.
        var cachedPromptTokens = 0
        var forked = false
        var cancelled = false
        /// Computes the prompt into the prefix cache and samples nothing (`warm(prompt:)`).
        var cacheOnly = false

        init(id: Int, arrival: Int, arrivalTime: Duration, prompt: [Int], parameters: SamplingParameters, seed: UInt64, first: Choice) {
            self.id = id
            self.arrivalTime = arrivalTime
            self.seed = seed
            self.arrival = arrival
            self.prompt = prompt
            self.parameters = parameters
            choices = [first]
        }
    }

    private var requests: [Int: Request] = [:]
    private var nextID = 0
    private var arrivals = 0

    /// - Parameters:
    ///   - detokenize: text of generated tokens, for stop strings (nil: they are not checked).
    ///   - clock: the time source for request ages (a manual clock in tests).
    ///   - disk: a disk tier under the prefix cache (`dsv4 serve --cache-dir`).
    public init(
        model: any CausalLM, configuration: EngineConfiguration, detokenize: (([Int]) -> String)? = nil,
        clock: any EngineClock = SystemClock(), disk: DiskTier? = nil
    ) {
        self.model = model
        self.configuration = configuration
        self.detokenize = detokenize
        self.clock = clock
        cache = CacheManager(layout: model.cacheLayout, budgetBytes: configuration.cacheBytes, initializeState: model.initializeState)
        if let disk { cache.attach(disk: disk) }
        scheduler = Scheduler(tokenBudget: configuration.tokenBudget, maxRunning: configuration.maxRunning, maxQueueDelay: configuration.maxQueueDelay)
    }

    public var hasWork: Bool { !requests.isEmpty }
    public var activeRequestCount: Int { requests.count }
    public var runningSequenceCount: Int { cache.sequenceCount }

    /// Checks a request before any work: parameters, token ids, context and cache fit.
    public func validate(prompt: [Int], parameters p: SamplingParameters) throws {
        guard !prompt.isEmpty else { throw EngineError.emptyPrompt }
        try p.validate(vocabSize: model.vocabSize)
        for (i, t) in prompt.enumerated() where t < 0 || t >= model.vocabSize {
            throw EngineError.tokenOutOfRange(index: i, id: t, vocabSize: model.vocabSize)
        }
        guard prompt.count + p.maxTokens <= model.maxPositions else {
            throw EngineError.contextTooLong(promptTokens: prompt.count, maxTokens: p.maxTokens, maximum: model.maxPositions)
        }
        let need = cache.footprint(promptTokens: prompt.count, maxTokens: p.maxTokens, n: p.n)
        guard need.bytes <= configuration.cacheBytes else {
            throw EngineError.exceedsCache(neededBytes: need.bytes, budgetBytes: configuration.cacheBytes, detail: need.description)
        }
    }

    /// Queues a validated request; returns its id.
    public func add(prompt: [Int], parameters p: SamplingParameters, constraint: (any TokenConstraintFactory)? = nil) throws -> Int {
        try validate(prompt: prompt, parameters: p)
        let id = nextID
        nextID += 1
        let seed = p.seed ?? UInt64.random(in: 0...UInt64.max)
        let first = Choice(tokens: prompt, rng: SeededGenerator(seed: seed), seen: Set(prompt))
        first.constraint = constraint?.make()
        requests[id] = Request(id: id, arrival: arrivals, arrivalTime: clock.now, prompt: prompt, parameters: p, seed: seed, first: first)
        arrivals += 1
        return id
    }

    /// Queues a request that only computes `prompt` into the prefix cache, leaving a snapshot
    /// at its end: the server warms the exact prefix a conversation's next turn sends (the
    /// previous prompt and the answer as the chat template renders it back), so that turn
    /// resumes there. It reports `started` and then `finished` with reason `length` and no
    /// token. Throws when the prompt is invalid or cannot fit.
    public func warm(prompt: [Int]) throws -> Int {
        var p = SamplingParameters()
        p.maxTokens = 1
        let id = try add(prompt: prompt, parameters: p)
        requests[id]!.cacheOnly = true
        return id
    }

    /// Marks a request cancelled; it stops at the next step and frees its cache.
    public func cancel(_ id: Int) { requests[id]?.cancelled = true }

    /// Runs one step; returns events by request id. Requests whose every choice finished are
    /// removed after their events.
    ///
    /// NOTE: the phases of nano-vllm's step, each a function a test can call: `closeCancelled`,
    /// `schedule` (plan + preemption), `prepare` (open, reserve, split at page boundaries),
    /// `run` (the forward) and `postprocess` (commit, fork, sample, finish).
    public func step() -> [(Int, EngineEvent)] {
        var events = closeCancelled()
        guard !requests.isEmpty else { return events }
        let plan = schedule()
        let batch = prepare(plan, events: &events)
        guard !batch.steps.isEmpty else { return events }
        guard let logits = run(batch, events: &events) else { return events }
        events += postprocess(batch, logits: logits)
        return events
    }

    /// One sequence's run of tokens in a step: a task's tokens up to a page boundary.
    struct Segment {
        let key: TaskKey
        let tokens: [Int]
        /// The snapshot block taken at the boundary this segment ends on, if any.
        let snapshot: BlockID?
        /// Whether the segment ends the sequence's known tokens (its logits are sampled).
        let wantsLogits: Bool
    }

    /// What one step feeds the model: `steps[i]` computes `segments[i]`.
    struct Batch {
        var segments: [Segment] = []
        var steps: [SequenceStep] = []
    }

    /// Cancellations free their cache before planning; returns their `finished` events.
    func closeCancelled() -> [(Int, EngineEvent)] {
        var events: [(Int, EngineEvent)] = []
        for r in requests.values where r.cancelled {
            for (i, c) in r.choices.enumerated() where c.finished == nil {
                if let s = c.sequence { cache.close(s) }
                c.sequence = nil
                c.finished = .cancelled
                events.append((r.id, .finished(choice: i, reason: .cancelled, stopString: nil)))
            }
            requests[r.id] = nil
        }
        return events
    }

    /// Plans the step over every unfinished choice and applies its preemptions: a preempted
    /// sequence is swapped out, not dropped (its pages and state stay in the prefix cache as
    /// evictable entries, written to the disk tier if memory runs short), and it resumes from
    /// there later, recomputing only what was evicted without a disk tier.
    func schedule() -> StepPlan {
        var tasks: [SchedulableTask] = []
        for r in requests.values {
            for (i, c) in r.choices.enumerated() where c.finished == nil {
                let held = c.sequence.map { _ in cache.layout.stateBytes + cache.layout.pageCount(forPositions: c.computed) * cache.layout.pageBytes } ?? 0
                tasks.append(SchedulableTask(
                    key: TaskKey(request: r.id, choice: i), arrival: r.arrival, pending: c.tokens.count - c.computed,
                    isRunning: c.sequence != nil, heldBytes: held, arrivalTime: r.arrivalTime))
            }
        }
        let available = cache.store.budgetBytes - cache.store.usedBytes + cache.evictableBytes
        let layout = cache.layout
        // Cost: new pages, and a state for a sequence not yet open. Snapshots are left out:
        // they are taken only from what is left once every planned page is reserved.
        let plan = scheduler.plan(tasks: tasks, now: clock.now, availableBytes: available) { t, n in
            let c = requests[t.key.request]!.choices[t.key.choice]
            let pagesNow = c.sequence == nil ? 0 : layout.pageCount(forPositions: c.computed)
            let pagesAfter = layout.pageCount(forPositions: c.computed + n)
            return (pagesAfter - pagesNow) * layout.pageBytes + (c.sequence == nil ? layout.stateBytes : 0)
        }
        for key in plan.preempt {
            let c = requests[key.request]!.choices[key.choice]
            if let s = c.sequence { cache.close(s, keepingEnd: true) }
            c.sequence = nil
            c.computed = 0
            c.swapped = true
            counters.preemptions += 1
        }
        return plan
    }

    /// Builds the batch of `plan`: opens every planned task (reporting `started` for a
    /// request's first admission) and reserves its pages, then splits each task's tokens at
    /// page boundaries, with a snapshot at each boundary while memory is left (after every
    /// page of the step is reserved). A task that cannot open or reserve waits.
    func prepare(_ plan: StepPlan, events: inout [(Int, EngineEvent)]) -> Batch {
        var reserved: [(TaskKey, SequenceID, Int)] = []
        for key in plan.order {
            guard let r = requests[key.request] else { continue }
            let c = r.choices[key.choice]
            var n = plan.run[key]!
            if c.sequence == nil {
                guard let cached = open(r, c, events: &events) else { continue }  // no memory this step
                n = min(n, c.tokens.count - cached)
            }
            guard let seq = c.sequence, n > 0 else { continue }
            do {
                try cache.reserve(seq, positions: c.computed + n)
            } catch {
                continue
            }
            reserved.append((key, seq, n))
        }
        var batch = Batch()
        let layout = cache.layout
        for (key, seq, n) in reserved {
            let c = requests[key.request]!.choices[key.choice]
            let view = cache.view(seq)
            var pos = c.computed
            let end = c.computed + n
            // A snapshot at every page boundary and at the end of the prompt (where a
            // conversation's next turn can resume: PrefixCache NOTE on tails).
            let promptEnd = requests[key.request]!.prompt.count
            while pos < end {
                let boundary = (pos / layout.pageTokens + 1) * layout.pageTokens
                let segEnd = pos < promptEnd && promptEnd < boundary ? min(end, promptEnd) : min(end, boundary)
                let snap = segEnd == boundary || segEnd == promptEnd ? cache.allocateSnapshot() : nil
                let toks = Array(c.tokens[pos..<segEnd])
                let last = segEnd == end && end == c.tokens.count
                batch.segments.append(Segment(key: key, tokens: toks, snapshot: snap, wantsLogits: last))
                batch.steps.append(SequenceStep(
                    tokens: toks, position: pos, state: view.state, pages: view.pages, logits: last ? .last : .none,
                    snapshot: snap.map { cache.pointer($0) }))
                pos = segEnd
            }
        }
        return batch
    }

    /// Opens choice `c` of `r` in the cache (resuming from the prefix cache); returns the
    /// cached tokens, or nil when memory is short. The request's first open reports `started`.
    private func open(_ r: Request, _ c: Choice, events: inout [(Int, EngineEvent)]) -> Int? {
        guard let (seq, cached) = try? cache.open(prompt: c.tokens, waitForSwapIn: c.swapped) else { return nil }
        c.swapped = false
        c.sequence = seq
        c.computed = cached
        if !r.started {
            r.started = true
            let wait = clock.now - r.arrivalTime
            if !r.cacheOnly {
                counters.admittedRequests += 1
                counters.totalQueueWait += wait
                counters.maxQueueWait = max(counters.maxQueueWait, wait)
                counters.promptTokens += r.prompt.count
                counters.cachedPromptTokens += cached
            }
            r.cachedPromptTokens = cached
            events.append((r.id, .started(promptTokens: r.prompt.count, cachedTokens: cached)))
        }
        return cached
    }

    /// Runs the model over `batch`; returns its logits rows, or nil when the model failed,
    /// which fails every request in the batch (their cache is freed, `failed` reported).
    func run(_ batch: Batch, events: inout [(Int, EngineEvent)]) -> [[Float]]? {
        let logits: [[Float]]
        do {
            logits = try model.forward(batch.steps)
        } catch {
            let failed = Set(batch.segments.map(\.key.request))
            for id in failed {
                if let r = requests[id] {
                    for c in r.choices { if let s = c.sequence { cache.close(s) } }
                    events.append((id, .failed(.modelFailure("\(error)"))))
                    requests[id] = nil
                }
            }
            return nil
        }
        counters.steps += 1
        counters.lastBatchSize = Set(batch.segments.map(\.key)).count
        counters.lastBatchTokens = batch.segments.reduce(0) { $0 + $1.tokens.count }
        counters.computedTokens += counters.lastBatchTokens
        return logits
    }

    /// Commits every segment of `batch` to the cache and, for segments that end their
    /// sequence's tokens, forks choice 0 into the other n − 1 choices (once, after the prompt),
    /// samples each target from `logits` and finishes those that stop. Returns the events.
    func postprocess(_ batch: Batch, logits: [[Float]]) -> [(Int, EngineEvent)] {
        var events: [(Int, EngineEvent)] = []
        for (i, seg) in batch.segments.enumerated() {
            guard let r = requests[seg.key.request] else { continue }
            let c = r.choices[seg.key.choice]
            cache.commit(c.sequence!, tokens: seg.tokens, snapshot: seg.snapshot)
            c.computed += seg.tokens.count
            guard seg.wantsLogits else { continue }
            if r.cacheOnly {
                // The prompt-end snapshot was taken with this segment; nothing to sample.
                c.finished = .length
                cache.close(c.sequence!)
                c.sequence = nil
                events.append((r.id, .finished(choice: 0, reason: .length, stopString: nil)))
                requests[r.id] = nil
                continue
            }
            var targets = [seg.key.choice]
            if seg.key.choice == 0 && !r.forked && r.parameters.n > 1 { targets += fork(r, from: c) }
            for k in targets { events += sample(r, choice: k, logits: logits[i]) }
            if r.choices.count == r.parameters.n && r.choices.allSatisfy({ $0.finished != nil }) { requests[r.id] = nil }
        }
        // Prompts still being prefilled report how far they are, once per request.
        var reported = Set<Int>()
        for seg in batch.segments where seg.key.choice == 0 && !reported.contains(seg.key.request) {
            guard let r = requests[seg.key.request], let c = r.choices.first, c.computed < r.prompt.count else { continue }
            reported.insert(r.id)
            events.append((r.id, .prefill(processed: c.computed, total: r.prompt.count, cached: r.cachedPromptTokens)))
        }
        return events
    }

    /// Prompt tokens computed and still to compute, over requests whose prompt is not done.
    public var prefillTokens: (done: Int, remaining: Int) {
        var done = 0, remaining = 0
        for r in requests.values {
            guard let c = r.choices.first, c.computed < r.prompt.count else { continue }
            done += c.computed
            remaining += r.prompt.count - c.computed
        }
        return (done, remaining)
    }

    /// Forks choice 0 (`c`, its prompt computed) into choices 1..<n sharing its cache; returns
    /// their indices. A child the cache cannot fork starts unopened and waits its turn.
    private func fork(_ r: Request, from c: Choice) -> [Int] {
        r.forked = true
        var added: [Int] = []
        for k in 1..<r.parameters.n {
            let child = Choice(tokens: c.tokens, rng: SeededGenerator(seed: r.seed &+ UInt64(k) &* 0x9E37_79B9_7F4A_7C15), seen: c.seen)
            child.constraint = c.constraint?.copy()
            if let s = try? cache.fork(c.sequence!) {
                child.sequence = s
                child.computed = c.computed
            }
            r.choices.append(child)
            added.append(k)
        }
        return added
    }

    /// Samples choice `k` of `r` from `logits`, appends the token and finishes the choice
    /// when it stops; returns its `token` (and `finished`) events.
    private func sample(_ r: Request, choice k: Int, logits: [Float]) -> [(Int, EngineEvent)] {
        let ch = r.choices[k]
        let s = Sampler.sample(
            logits: logits, parameters: r.parameters, seen: ch.seen, generatedCounts: ch.counts, rng: &ch.rng,
            constraint: ch.constraint, eos: r.parameters.ignoreEOS ? [] : Set(model.eosTokenIds))
        ch.constraint?.accept(s.token)
        ch.tokens.append(s.token)
        ch.generated.append(s.token)
        ch.counts[s.token, default: 0] += 1
        ch.seen.insert(s.token)
        counters.generatedTokens += 1
        var events: [(Int, EngineEvent)] = [(r.id, .token(choice: k, s))]
        if let (reason, stop) = finishReason(r, ch, s.token) {
            ch.finished = reason
            // The state where the output stopped stays cached: a next turn resumes there.
            if let q = ch.sequence { cache.close(q, keepingEnd: true) }
            ch.sequence = nil
            events.append((r.id, .finished(choice: k, reason: reason, stopString: stop)))
        }
        return events
    }

    private func finishReason(_ r: Request, _ c: Choice, _ token: Int) -> (FinishReason, String?)? {
        let p = r.parameters
        if p.stopTokenIds.contains(token) || (!p.ignoreEOS && model.eosTokenIds.contains(token)) { return (.stop, nil) }
        if let detokenize, let s = c.stops.match(p.stop, in: c.generated, detokenize: detokenize) { return (.stop, s) }
        if c.generated.count >= p.maxTokens { return (.length, nil) }
        return nil
    }
}
