/// Who asked for something, as the machine carries it into the actions it returns: it only
/// passes it on, and needs one value of its own for its own decisions (a crash restart, a
/// linger's end).
public protocol Requester: Equatable, Sendable {
    static var procrefd: Self { get }
}

/// Every decision about one service, and nothing else: a value that takes an event (with
/// the time and the kernel count when it happened) and returns the actions to run, in the
/// style of swift-nio's and swift-service-lifecycle's state machines. No I/O, no clock of
/// its own, and nothing of the project imported (this target has no dependencies):
/// `ServiceExecutor` runs the actions and feeds back what they report, and the tests drive
/// it with made-up times. `By` is who asks (procrefd's `Principal`).
public struct ServiceMachine<By: Requester>: Sendable {
    var phase: Phase = .stopped
    public internal(set) var policy: ServicePolicy
    /// The main process runs (as far as the machine has heard).
    var running = false
    public internal(set) var lastHealth: String?
    /// When a health probe last passed: within `health.freshMs` it covers later acquires.
    var lastPassedAt: Int64?
    /// Recent restarts and failed starts, for the restart limit.
    var restarts: [Int64] = []
    /// Acquires waiting for the service to be ready, in arrival order.
    var waiters: [Waiter] = []
    /// Acquires waiting for a slot, in arrival order (see `ServiceMachine+Slots.swift`).
    public internal(set) var slotQueue: [Waiter] = []
    /// Admin requests waiting for a start to finish.
    var requesters: [Waiter] = []
    /// Waiters to tell once the teardown under way is over.
    var stopWaiters: [Waiter] = []
    var tokens: [ServiceTimer: UInt64] = [:]
    var probeToken: UInt64?
    var postReadyToken: UInt64?
    var nextToken: UInt64 = 0
    /// Who asked for what is under way, for the records.
    var requestedBy = By.procrefd
    /// The errno of the kernel count's last failed read, while it stays unreadable:
    /// `service.kernel_unreadable` is recorded once per spell, and status shows it.
    public internal(set) var kernelUnreadable: Int32?

    public init(policy: ServicePolicy) { self.policy = policy }

    /// When a pending linger stop is due (only while ready).
    public var lingerUntil: Int64? {
        if case .ready(let until) = phase { return until }
        return nil
    }

    /// A start is at its first step: its main process is yet to be spawned.
    public var isSpawning: Bool {
        if case .starting(let start) = phase { return start.step == .spawning }
        return false
    }

    /// Status's view of the phase.
    public var state: ServiceState {
        switch phase {
        case .stopped: return .stopped
        case .starting: return .starting
        case .ready: return .ready
        case .probing(let attempt): return attempt > 1 ? .unhealthy : .ready
        case .stopping(.recover): return .recovering
        case .stopping: return .stopping
        case .backoff: return .recovering
        case .failed: return .failed
        case .frozen: return .frozen
        }
    }

    public var failureReason: String? {
        if case .failed(let reason) = phase { return reason }
        return nil
    }

    /// Restarts within the restart window at `now`.
    public func restarts(at now: Int64) -> Int { restarts.count { now - $0 <= Int64(policy.restartWindowMs) } }

    /// Takes one event. `now` is monotonic milliseconds; `count` the kernel reference count
    /// read as the event is handled. Returns the actions to run, in order.
    public mutating func handle(_ event: ServiceEvent<By>, now: Int64, count: KernelCount) -> [ServiceAction<By>] {
        var step = Step(now: now, count: count)
        noteReadability(of: count, &step)
        dispatch(event, &step)
        return step.actions
    }

    /// Records the first unreadable count of a spell (with its errno); a readable one ends it.
    mutating func noteReadability(of count: KernelCount, _ step: inout Step) {
        switch count {
        case .known: kernelUnreadable = nil
        case .unreadable(let errno):
            guard kernelUnreadable == nil else { return }
            kernelUnreadable = errno
            step.actions.append(.record(.kernelUnreadable(errno: errno), by: .procrefd))
        }
    }

    /// One handling in progress: its inputs and the actions so far.
    struct Step {
        let now: Int64
        let count: KernelCount
        var actions: [ServiceAction<By>] = []
        /// Holders this step launches: each adds one to the kernel count once it runs.
        var launches = 0
    }

    mutating func dispatch(_ event: ServiceEvent<By>, _ step: inout Step) {
        switch event {
        case let .acquire(waiter, by): acquire(waiter, by: by, &step)
        case .abandon(let waiter):
            waiters.removeAll { $0 == waiter }
            if case .starting(var start) = phase, start.startedBy == waiter {
                start.startedBy = nil
                phase = .starting(start)
            }
            leaveQueue(waiter, .timeout, &step)
        case let .lastReferenceGone(reason, by, waiter): lastReferenceGone(reason, by: by, waiter, &step)
        case let .restartRequested(waiter, by): restartRequested(waiter, by: by, &step)
        case let .resetRequested(waiter, by): resetRequested(waiter, by: by, &step)
        case let .stopRequested(reason, by, waiter): stopRequested(reason, by: by, waiter, &step)
        case let .startRequested(waiter, by):
            guard phase == .stopped else { return step.actions.append(.answer(waiter, .done(stopped: false))) }
            requesters.append(waiter)
            requestedBy = by
            beginStart(.reconcile, &step)
        case .adopted:
            running = true
            phase = .ready(lingerUntil: nil)
        case .definitionChanged(let policy):
            self.policy = policy
            grantSlots(&step)  // more slots, or none
        case let .slotWanted(waiter, waitMs): slotWanted(waiter, waitMs: waitMs, &step)
        case .slotFreed: grantSlots(&step)
        case let .queueLeft(waiter, reason): leaveQueue(waiter, reason, &step)
        case .queueClosed: while let waiter = slotQueue.first { leaveQueue(waiter, .shutdown, &step) }
        case .spawned: spawned(&step)
        case .spawnFailed(let reason): failBeforeSpawn(reason, recorded: "spawn: \(reason)", &step)
        case .startStepFailed(let reason): failBeforeSpawn(reason, recorded: reason, &step)
        case let .postReadyFinished(token, failure): postReadyFinished(token, failure, &step)
        case .startRefused(let refusal):
            guard case .starting = phase else { return }
            cancel([.startDeadline], &step)
            phase = .stopped
            for waiter in takeWaiters() + takeRequesters() { step.actions.append(.answer(waiter, .refused(refusal))) }
        case .evictRequested(let waiter):
            let idle: Bool
            switch phase {
            case .ready(let lingerUntil): idle = lingerUntil != nil
            case .frozen: idle = true
            default: idle = false
            }
            guard idle, step.count.isZero else { return step.actions.append(.answer(waiter, .done(stopped: false))) }
            requestedBy = .procrefd
            stopWaiters.append(waiter)
            beginStop("evicted", then: .idle, &step)
        case .pidFileRead(let found): pidFileRead(found, &step)
        case .mainExited(let exit): mainExited(exit, &step)
        case .probePassed(let token): probePassed(token, &step)
        case let .probeFailed(token, reason): probeFailed(token, reason, &step)
        case .teardownFinished: teardownFinished(&step)
        case let .timerFired(timer, token):
            guard tokens[timer] == token else { return }
            tokens[timer] = nil
            timerFired(timer, &step)
        }
    }

    // MARK: Running

    mutating func mainExited(_ exit: MainExit, _ step: inout Step) {
        running = false
        switch phase {
        case .starting(var start) where start.step == .awaitingLauncher:
            guard exit.succeeded else {
                return failStart("the start command ended with \(exit) (pid_file mode expects exit code 0)", &step)
            }
            start.step = .awaitingPidFile
            phase = .starting(start)
            step.actions.append(.readPidFile)
        case .starting:
            failStart("exited during start-up with \(exit)", &step)
        case .ready, .probing, .frozen:
            step.actions.append(.record(.exited(exit), by: .procrefd))
            requestedBy = .procrefd
            beginStop("exited", then: .crashRestart, &step)
        // A stop under way expects it; stopped, backing off or failed, the exit was handled.
        case .stopping, .stopped, .backoff, .failed: break
        }
    }

    mutating func probePassed(_ token: UInt64, _ step: inout Step) {
        guard probeToken == token else { return }
        probeToken = nil
        switch phase {
        case .starting(let start): becomeReady(start, &step)
        case .probing:
            phase = .ready(lingerUntil: nil)
            lastHealth = "ok"
            lastPassedAt = step.now
            for waiter in takeWaiters() { step.actions.append(.answer(waiter, .ready(started: false))) }
        case .stopped, .ready, .stopping, .backoff, .failed, .frozen:
            // A probe runs only while starting or probing, and every way out clears its token.
            assertionFailure("probe \(token) passed in \(phase)")
        }
    }

    mutating func probeFailed(_ token: UInt64, _ reason: String, _ step: inout Step) {
        guard probeToken == token else { return }
        probeToken = nil
        lastHealth = reason
        switch phase {
        case .starting: arm(.readinessRetry, afterMs: ServicePolicy.readinessRetryMs, &step)
        case .probing(let attempt):
            if attempt < (policy.health?.failures ?? 1), running {
                phase = .probing(attempt: attempt + 1)
                arm(.healthRetry, afterMs: policy.health?.intervalMs ?? 0, &step)
            } else {
                step.actions.append(.record(.unhealthy(reason: reason, probes: attempt), by: requestedBy))
                beginStop("unhealthy", then: .recover, &step)
            }
        case .stopped, .ready, .stopping, .backoff, .failed, .frozen:
            // A probe runs only while starting or probing, and every way out clears its token.
            assertionFailure("probe \(token) failed in \(phase)")
        }
    }

    // MARK: Stopping

    mutating func beginStop(_ reason: String, then: AfterStop, _ step: inout Step) {
        cancel([.linger, .healthRetry, .readinessRetry, .pidFileRetry, .startDeadline, .frozenMax], &step)
        probeToken = nil
        phase = .stopping(then: then)
        step.actions.append(.teardown(reason: reason, by: requestedBy))
    }

    mutating func teardownFinished(_ step: inout Step) {
        guard case .stopping(let then) = phase else { return }
        running = false
        phase = .stopped
        for waiter in takeStopWaiters() { step.actions.append(.answer(waiter, .done(stopped: true))) }
        switch then {
        case .idle: if !waiters.isEmpty { beginStart(.acquire, &step) }
        case .crashRestart: planRestart(&step)
        case .recover: beginStart(.recover, &step)
        case .adminRestart: beginStart(.adminRestart, &step)
        case let .failedStart(reason, startReason): finishFailedStart(reason, startReason, &step)
        case .hold:
            for waiter in takeWaiters() + takeRequesters() { step.actions.append(.answer(waiter, .refused(.stopped))) }
            while let waiter = slotQueue.first { leaveQueue(waiter, .serviceStopped, &step) }
        }
    }

    /// After a crash: restart with backoff while the kernel still counts leases, up to
    /// restart_limit within restart_window_ms, then `failed`.
    mutating func planRestart(_ step: inout Step) {
        requestedBy = .procrefd
        guard step.count.mayBeHeld else { return phase = .stopped }
        restarts.removeAll { step.now - $0 > Int64(policy.restartWindowMs) }
        guard restarts.count < policy.restartLimit else {
            let failure = "\(restarts.count) restarts within \(policy.restartWindowMs) ms"
            phase = .failed(failure)
            step.actions.append(.record(.failed(failure, count: step.count.value), by: requestedBy))
            for waiter in takeWaiters() { step.actions.append(.answer(waiter, .refused(.failed(failure)))) }
            return
        }
        let delay = policy.backoff(after: restarts.count)
        restarts.append(step.now)
        phase = .backoff
        arm(.backoff, afterMs: delay, &step)
        step.actions.append(.record(.restarting(backoffMs: delay, attempt: restarts.count), by: requestedBy))
    }

    // MARK: Timers

    mutating func timerFired(_ timer: ServiceTimer, _ step: inout Step) {
        switch (timer, phase) {
        case (.linger, .ready):
            phase = .ready(lingerUntil: nil)
            if step.count.isZero {
                requestedBy = .procrefd
                idle("linger_expired", &step)
            }
        case (.frozenMax, .frozen):
            if step.count.isZero {
                requestedBy = .procrefd
                beginStop("frozen_max", then: .idle, &step)
            } else {
                thaw(&step)  // something counts it: it runs again
            }
        case (.backoff, .backoff):
            if step.count.isZero { phase = .stopped } else { beginStart(.restart, &step) }
        case (.startDeadline, .starting(let start)):
            switch start.step {
            case .awaitingLauncher: failStart("the start command did not exit (pid_file mode expects it to once the daemon runs)", &step)
            case .awaitingPidFile: failStart("\(policy.pidFile ?? "the pid file") names no live process of the service", &step)
            case .postReady: failStart("post_ready did not finish within \(policy.readyTimeoutMs) ms", &step)
            case .spawning where policy.hasPreStart: failStart("pre_start did not finish within \(policy.readyTimeoutMs) ms", &step)
            case .spawning, .probing:
                failStart("not healthy within \(policy.readyTimeoutMs) ms (last: \(lastHealth ?? "no health check passed"))", &step)
            }
        case (.readinessRetry, .starting(let start)) where start.step == .probing: probe(readiness: true, &step)
        case (.pidFileRetry, .starting(let start)) where start.step == .awaitingPidFile: step.actions.append(.readPidFile)
        case (.healthRetry, .probing): probe(readiness: false, &step)
        // Each timer is armed in one phase (a start's retries in one step of it), and every
        // way out of that phase cancels it: its token is gone before another phase can see it.
        case (.linger, _), (.backoff, _), (.startDeadline, _), (.readinessRetry, _), (.pidFileRetry, _), (.healthRetry, _), (.frozenMax, _):
            assertionFailure("\(timer) fired in \(phase)")
        }
    }

    // MARK: Bookkeeping

    mutating func arm(_ timer: ServiceTimer, afterMs: Int, _ step: inout Step) {
        nextToken += 1
        tokens[timer] = nextToken
        step.actions.append(.schedule(timer, afterMs: afterMs, token: nextToken))
    }

    mutating func cancel(_ timers: [ServiceTimer], _ step: inout Step) {
        for timer in timers where tokens.removeValue(forKey: timer) != nil { step.actions.append(.cancel(timer)) }
    }

    mutating func probe(readiness: Bool, _ step: inout Step) {
        nextToken += 1
        probeToken = nextToken
        step.actions.append(.probe(token: nextToken, readiness: readiness))
    }

    mutating func takeWaiters() -> [Waiter] {
        defer { waiters = [] }
        return waiters
    }

    mutating func takeRequesters() -> [Waiter] {
        defer { requesters = [] }
        return requesters
    }

    mutating func takeStopWaiters() -> [Waiter] {
        defer { stopWaiters = [] }
        return stopWaiters
    }
}
