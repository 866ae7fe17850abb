// SchedulerTests.swift: the scheduler's decisions, with no model and no memory.
import Engine
import Testing

func task(_ r: Int, _ c: Int = 0, arrival: Int? = nil, pending: Int, running: Bool, held: Int = 0) -> SchedulableTask {
    SchedulableTask(key: TaskKey(request: r, choice: c), arrival: arrival ?? r, pending: pending, isRunning: running, heldBytes: held)
}

@Suite struct SchedulerTests {
    let perToken: (SchedulableTask, Int) -> Int = { t, n in n + (t.isRunning ? 0 : 10) }

    @Test func decodesRunBeforePrefillChunks() {
        let s = Scheduler(tokenBudget: 8, maxRunning: 10)
        let plan = s.plan(
            tasks: [task(0, pending: 100, running: true), task(1, pending: 1, running: true), task(2, pending: 1, running: true)],
            availableBytes: 1000, cost: perToken)
        #expect(plan.order == [TaskKey(request: 1, choice: 0), TaskKey(request: 2, choice: 0), TaskKey(request: 0, choice: 0)])
        #expect(plan.run[TaskKey(request: 0, choice: 0)] == 6)  // the prefill gets what decodes left
        #expect(plan.tokenCount == 8)
    }

    @Test func longPromptIsChunkedAndDoesNotStallStreams() {
        let s = Scheduler(tokenBudget: 16, maxRunning: 10)
        let plan = s.plan(tasks: [task(0, pending: 1, running: true), task(1, pending: 5000, running: false)], availableBytes: 10_000, cost: perToken)
        #expect(plan.run[TaskKey(request: 0, choice: 0)] == 1)
        #expect(plan.run[TaskKey(request: 1, choice: 0)] == 15)
    }

    @Test func admissionIsFirstComeFirstServed() {
        let s = Scheduler(tokenBudget: 100, maxRunning: 10)
        // Request 1 cannot fit; request 2 could, but must not overtake it.
        let plan = s.plan(
            tasks: [task(1, pending: 1, running: false), task(2, pending: 1, running: false)], availableBytes: 5,
            cost: { t, n in t.key.request == 1 ? 50 : 1 })
        #expect(plan.run.isEmpty)
    }

    @Test func maxRunningLimitsAdmissions() {
        let s = Scheduler(tokenBudget: 100, maxRunning: 2)
        let plan = s.plan(
            tasks: [task(0, pending: 1, running: true), task(1, pending: 3, running: false), task(2, pending: 3, running: false)],
            availableBytes: 1000, cost: perToken)
        #expect(plan.run.count == 2)
        #expect(plan.run[TaskKey(request: 2, choice: 0)] == nil)
    }

    @Test func memoryPressurePreemptsTheNewestRunning() {
        let s = Scheduler(tokenBudget: 100, maxRunning: 10)
        let tasks = [
            task(0, pending: 1, running: true, held: 40), task(1, pending: 1, running: true, held: 40),
            task(2, pending: 1, running: true, held: 40),
        ]
        // Each decode needs 30 bytes; only 40 are free: the newest (2) is preempted for 0 and 1.
        let plan = s.plan(tasks: tasks, availableBytes: 40, cost: { _, _ in 30 })
        #expect(plan.preempt == [TaskKey(request: 2, choice: 0)])
        #expect(Set(plan.run.keys) == [TaskKey(request: 0, choice: 0), TaskKey(request: 1, choice: 0)])
    }

    @Test func olderRequestsAreNeverPreemptedForNewerOnes() {
        let s = Scheduler(tokenBudget: 100, maxRunning: 10)
        let plan = s.plan(tasks: [task(0, pending: 1, running: true, held: 40), task(1, pending: 1, running: true, held: 40)], availableBytes: 30, cost: { _, _ in 30 })
        #expect(plan.preempt.isEmpty)
        #expect(plan.run.keys.map(\.request) == [0])
    }

    @Test func prefillShrinksToFitMemory() {
        let s = Scheduler(tokenBudget: 64, maxRunning: 10)
        let plan = s.plan(tasks: [task(0, pending: 64, running: true)], availableBytes: 20, cost: { _, n in n })
        #expect(plan.run[TaskKey(request: 0, choice: 0)] == 16)
    }
}

@Suite struct SchedulerAgingTests {
    let perToken: (SchedulableTask, Int) -> Int = { t, n in n + (t.isRunning ? 0 : 10) }

    func waiting(_ r: Int, arrivedAt t: Int, pending: Int = 3) -> SchedulableTask {
        SchedulableTask(key: TaskKey(request: r, choice: 0), arrival: r, pending: pending, isRunning: false, heldBytes: 0, arrivalTime: .seconds(t))
    }

    @Test func overdueWaitingTaskGoesAheadOfRunningPrefill() {
        let s = Scheduler(tokenBudget: 16, maxRunning: 10, maxQueueDelay: .seconds(2))
        let tasks = [task(0, pending: 1, running: true), task(1, pending: 5000, running: true), waiting(2, arrivedAt: 10)]
        // At 11 s the newcomer has waited 1 s: the running prefill takes the budget.
        let early = s.plan(tasks: tasks, now: .seconds(11), availableBytes: 10_000, cost: perToken)
        #expect(early.run[TaskKey(request: 2, choice: 0)] == nil)
        #expect(early.run[TaskKey(request: 1, choice: 0)] == 15)
        // At 13 s it is overdue: after the decode, before the prefill.
        let late = s.plan(tasks: tasks, now: .seconds(13), availableBytes: 10_000, cost: perToken)
        #expect(late.order.map(\.request) == [0, 2, 1])
        #expect(late.run[TaskKey(request: 2, choice: 0)] == 3 && late.run[TaskKey(request: 1, choice: 0)] == 12)
    }

    @Test func overdueTasksKeepTheirArrivalOrderAndMemoryLimits() {
        let s = Scheduler(tokenBudget: 100, maxRunning: 10, maxQueueDelay: .seconds(1))
        let tasks = [task(0, pending: 50, running: true), waiting(1, arrivedAt: 0), waiting(2, arrivedAt: 0)]
        // Request 1 cannot fit: request 2 must not overtake it, though both are overdue.
        let plan = s.plan(tasks: tasks, now: .seconds(5), availableBytes: 60, cost: { t, n in t.key.request == 1 ? 1000 : n })
        #expect(plan.run[TaskKey(request: 1, choice: 0)] == nil && plan.run[TaskKey(request: 2, choice: 0)] == nil)
        #expect(plan.run[TaskKey(request: 0, choice: 0)] == 50)
    }

    @Test func withoutAMaxDelayAdmissionIsStrictlyAfterRunningWork() {
        let s = Scheduler(tokenBudget: 16, maxRunning: 10)
        let plan = s.plan(tasks: [task(1, pending: 5000, running: true), waiting(2, arrivedAt: 0)], now: .seconds(1000), availableBytes: 10_000, cost: perToken)
        #expect(plan.run[TaskKey(request: 2, choice: 0)] == nil)
    }
}
