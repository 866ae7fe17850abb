// Scheduler.swift: decides, each step, which sequences run and how many tokens each gets.
// A pure function of its inputs (no model, no memory; the time is an input): tested on its own.
//
// Policy (vLLM v1 style: one structure for prefill and decode, "pending tokens" per task):
// 1. Running tasks first, oldest request first; decodes (1 pending token) before prefill
//    chunks, so long prompts never stall running streams.
// 2. Chunked prefill fills the remaining per-step token budget.
// 3. Under memory pressure the newest running tasks are preempted (their cache freed; they
//    recompute later, helped by the prefix cache) so that older ones keep going.
// 4. Waiting tasks are admitted first-come first-served while budget and memory allow; a
//    task that does not fit blocks the ones behind it (no starvation of large prompts).
// 5. Aging: a waiting task whose request has waited longer than `maxQueueDelay` is admitted
//    right after the decodes, ahead of running prefill chunks, so one long prompt being
//    prefilled cannot hold a newcomer's first token back for the whole prefill.

/// One choice of one request.
public struct TaskKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let request: Int
    public let choice: Int
    public init(request: Int, choice: Int) {
        self.request = request
        self.choice = choice
    }
    public static func < (a: TaskKey, b: TaskKey) -> Bool { (a.request, a.choice) < (b.request, b.choice) }
    public var description: String { "r\(request).\(choice)" }
}

/// What the scheduler knows of a task.
public struct SchedulableTask: Sendable, Equatable {
    public let key: TaskKey
    /// Admission order of its request (smaller = older = higher priority).
    public let arrival: Int
    /// Tokens whose history is not yet computed.
    public let pending: Int
    /// Whether it holds cache memory (a sequence).
    public let isRunning: Bool
    /// Bytes it would give back if preempted.
    public let heldBytes: Int
    /// When its request arrived, on the engine's clock.
    public let arrivalTime: Duration

    public init(key: TaskKey, arrival: Int, pending: Int, isRunning: Bool, heldBytes: Int, arrivalTime: Duration = .zero) {
        self.key = key
        self.arrival = arrival
        self.pending = pending
        self.isRunning = isRunning
        self.heldBytes = heldBytes
        self.arrivalTime = arrivalTime
    }
}

/// The decisions for one step.
public struct StepPlan: Sendable, Equatable {
    /// Tasks to run with their token counts, in execution order.
    public var run: [TaskKey: Int] = [:]
    public var order: [TaskKey] = []
    /// Running tasks whose cache is freed this step (they wait again, first in line).
    public var preempt: [TaskKey] = []

    public var tokenCount: Int { run.values.reduce(0, +) }
}

public struct Scheduler: Sendable {
    /// Tokens computed per step at most (decodes + prefill chunks).
    public var tokenBudget: Int
    /// Sequences holding cache at once at most.
    public var maxRunning: Int
    /// A waiting task older than this goes ahead of running prefill chunks; nil: never.
    public var maxQueueDelay: Duration?

    public init(tokenBudget: Int, maxRunning: Int, maxQueueDelay: Duration? = nil) {
        self.tokenBudget = max(tokenBudget, 1)
        self.maxRunning = max(maxRunning, 1)
        self.maxQueueDelay = maxQueueDelay
    }

    /// - Parameters:
    ///   - now: the engine clock's time (for aging against `arrivalTime`).
    ///   - availableBytes: free cache budget (including what eviction can reclaim).
    ///   - cost: bytes a task needs to run `n` more tokens (pages, snapshots, and a state if not running).
    public func plan(tasks: [SchedulableTask], now: Duration = .zero, availableBytes: Int, cost: (SchedulableTask, Int) -> Int) -> StepPlan {
        var plan = StepPlan()
        var avail = availableBytes
        var budget = tokenBudget
        let byAge: (SchedulableTask, SchedulableTask) -> Bool = { ($0.arrival, $0.key.choice) < ($1.arrival, $1.key.choice) }
        let running = tasks.filter { $0.isRunning && $0.pending > 0 }.sorted(by: byAge)
        let waiting = tasks.filter { !$0.isRunning && $0.pending > 0 }.sorted(by: byAge)
        // Candidates for preemption: newest first.
        var victims = tasks.filter(\.isRunning).sorted(by: byAge).reversed().map { $0 }
        var preempted = Set<TaskKey>()

        func schedule(_ t: SchedulableTask, allowPreemption: Bool) -> Bool {
            var n = min(t.pending, budget)
            guard n > 0 else { return false }
            var c = cost(t, n)
            while c > avail {
                if n > 1 {
                    n = max(1, n / 2)
                    c = cost(t, n)
                    continue
                }
                guard allowPreemption,
                    let vi = victims.firstIndex(where: { $0.key != t.key && plan.run[$0.key] == nil && !preempted.contains($0.key) && byAge(t, $0) })
                else { break }
                let v = victims.remove(at: vi)
                preempted.insert(v.key)
                plan.preempt.append(v.key)
                avail += v.heldBytes
            }
            guard c <= avail else { return false }
            plan.run[t.key] = n
            plan.order.append(t.key)
            avail -= c
            budget -= n
            return true
        }

        for t in running where t.pending == 1 {
            if budget == 0 { break }
            if preempted.contains(t.key) { continue }
            _ = schedule(t, allowPreemption: true)
        }
        var runningCount = tasks.filter(\.isRunning).count - preempted.count
        // Overdue waiting tasks, oldest first, before running prefills (rule 5).
        var admittedEarly = Set<TaskKey>()
        if let limit = maxQueueDelay {
            for t in waiting where now - t.arrivalTime > limit {
                if budget == 0 || runningCount >= maxRunning { break }
                guard schedule(t, allowPreemption: false) else { break }
                admittedEarly.insert(t.key)
                runningCount += 1
            }
        }
        for t in running where t.pending > 1 {
            if budget == 0 { break }
            if preempted.contains(t.key) { continue }
            _ = schedule(t, allowPreemption: true)
        }
        for t in waiting where !admittedEarly.contains(t.key) {
            if budget == 0 || runningCount >= maxRunning { break }
            guard schedule(t, allowPreemption: false) else { break }
            runningCount += 1
        }
        return plan
    }
}
