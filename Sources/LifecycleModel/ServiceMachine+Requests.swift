/// The machine's transitions for requests and starts; `ServiceMachine.dispatch` names them all.
extension ServiceMachine {
    // MARK: Requests

    mutating func acquire(_ waiter: Waiter, by: By, _ step: inout Step) {
        switch phase {
        case .failed(let reason): step.actions.append(.answer(waiter, .refused(.failed(reason))))
        case .stopped:
            waiters.append(waiter)
            requestedBy = by
            beginStart(.acquire, &step)
        case .starting, .stopping, .backoff, .probing: waiters.append(waiter)
        case .frozen:
            thaw(&step)
            requestedBy = by
            guard policy.health != nil else { return step.actions.append(.answer(waiter, .ready(started: false))) }
            // A thawed service is checked before it is trusted: it may have lost its peers.
            waiters.append(waiter)
            phase = .probing(attempt: 1)
            probe(readiness: false, &step)
        case .ready(let lingerUntil):
            if lingerUntil != nil {
                phase = .ready(lingerUntil: nil)
                cancel([.linger], &step)
            }
            guard let health = policy.health, !isFresh(health, step.now) else {
                return step.actions.append(.answer(waiter, .ready(started: false)))
            }
            waiters.append(waiter)
            phase = .probing(attempt: 1)
            requestedBy = by
            probe(readiness: false, &step)
        }
    }

    /// Whether an acquire at `now` would be answered `ready` with no other action: the
    /// service is ready, without slots, not lingering, and its health is fresh (or it has no
    /// check). Such an acquire may be granted without an event (see `Coordinator.acquireNow`).
    public func grantsAtOnce(now: Int64) -> Bool { grantWindowEnd.map { now < $0 } ?? false }

    /// Until when (monotonic ms) `grantsAtOnce` holds as long as no event comes: nil never,
    /// `Int64.max` with no health check to go stale.
    public var grantWindowEnd: Int64? {
        guard policy.slots == nil, case .ready(lingerUntil: nil) = phase else { return nil }
        guard let health = policy.health else { return .max }
        return lastPassedAt.map { $0 + Int64(health.freshMs) }
    }

    func isFresh(_ health: ServicePolicy.Health, _ now: Int64) -> Bool {
        lastPassedAt.map { now - $0 < Int64(health.freshMs) } ?? false
    }

    mutating func lastReferenceGone(_ reason: String, by: By, _ waiter: Waiter?, _ step: inout Step) {
        var stopping = false
        if step.count.isZero {
            switch phase {
            case .ready where policy.isLock: phase = .stopped
            case .ready where running:
                if policy.lingerMs > 0 {
                    phase = .ready(lingerUntil: step.now + Int64(policy.lingerMs))
                    arm(.linger, afterMs: policy.lingerMs, &step)
                } else {
                    requestedBy = by
                    stopping = idle(reason, &step)
                }
            case .backoff:
                cancel([.backoff], &step)
                phase = .stopped
            // A start, a probe or a stop under way decides when it ends (it reads the count
            // then); stopped and failed have nothing to stop; a ready service whose main
            // process is not running is being handled by its exit.
            case .starting, .probing, .stopping, .stopped, .failed, .ready, .frozen: break
            }
        }
        guard let waiter else { return }
        if stopping { stopWaiters.append(waiter) } else { step.actions.append(.answer(waiter, .done(stopped: false))) }
    }

    /// Nothing counts a running service any more: it is frozen (`idle = "freeze"`), else
    /// stopped. Returns whether it is stopping.
    @discardableResult
    mutating func idle(_ reason: String, _ step: inout Step) -> Bool {
        guard let freezeMaxMs = policy.freezeMaxMs else {
            beginStop(reason, then: .idle, &step)
            return true
        }
        phase = .frozen(until: step.now + Int64(freezeMaxMs))
        arm(.frozenMax, afterMs: freezeMaxMs, &step)
        step.actions.append(.freeze)
        step.actions.append(.record(.frozen(forMs: freezeMaxMs), by: requestedBy))
        return false
    }

    /// Thaws a frozen service: it is ready again (an acquire then checks its health).
    mutating func thaw(_ step: inout Step) {
        guard case .frozen(let until) = phase else { return }
        cancel([.frozenMax], &step)
        phase = .ready(lingerUntil: nil)
        step.actions.append(.thaw)
        let frozenMs = step.now - (until - Int64(policy.freezeMaxMs ?? 0))
        step.actions.append(.record(.thawed(frozenMs: frozenMs), by: requestedBy))
    }

    mutating func restartRequested(_ waiter: Waiter, by: By, _ step: inout Step) {
        switch phase {
        case .ready where running, .frozen where running:
            requesters.append(waiter)
            requestedBy = by
            beginStop("admin_restart", then: .adminRestart, &step)
        case .stopped, .failed, .ready, .frozen: step.actions.append(.answer(waiter, .refused(.notRunning)))
        case .starting, .probing, .stopping, .backoff: step.actions.append(.answer(waiter, .refused(.busy(state))))
        }
    }

    mutating func resetRequested(_ waiter: Waiter, by: By, _ step: inout Step) {
        guard case .failed = phase else { return step.actions.append(.answer(waiter, .refused(.notFailed))) }
        restarts = []
        phase = .stopped
        requestedBy = by
        step.actions.append(.record(.reset(count: step.count.value), by: requestedBy))
        guard step.count.mayBeHeld else { return step.actions.append(.answer(waiter, .done(stopped: false))) }
        requesters.append(waiter)
        beginStart(.reset, &step)
    }

    mutating func stopRequested(_ reason: String, by: By, _ waiter: Waiter, _ step: inout Step) {
        cancel(ServiceTimer.allCases, &step)
        stopWaiters.append(waiter)
        requestedBy = by
        if case .stopping = phase {
            phase = .stopping(then: .hold)  // its teardown is under way: only what follows changes
        } else {
            beginStop(reason, then: .hold, &step)
        }
    }

    // MARK: Starting

    mutating func beginStart(_ reason: StartReason, _ step: inout Step) {
        guard !policy.isLock else {
            // Nothing to start: a lock is ready as soon as it is counted.
            phase = .ready(lingerUntil: nil)
            for waiter in takeWaiters() { step.actions.append(.answer(waiter, .ready(started: false))) }
            for waiter in takeRequesters() { step.actions.append(.answer(waiter, .done(stopped: false))) }
            return
        }
        phase = .starting(Start(reason: reason, begunAt: step.now, step: .spawning, startedBy: reason == .acquire ? waiters.first : nil))
        lastPassedAt = nil
        arm(.startDeadline, afterMs: policy.readyTimeoutMs, &step)
        step.actions.append(.spawn(reason, by: requestedBy))
    }

    mutating func spawned(_ step: inout Step) {
        guard case .starting(var start) = phase else { return }
        running = true
        guard policy.pidFile == nil else {
            start.step = .awaitingLauncher
            return phase = .starting(start)
        }
        mainRuns(start, &step)
    }

    mutating func pidFileRead(_ reading: PidFileReading, _ step: inout Step) {
        guard case .starting(let start) = phase, start.step == .awaitingPidFile else { return }
        switch reading {
        case .notYet: arm(.pidFileRetry, afterMs: ServicePolicy.pidFileRetryMs, &step)
        case .refused(let reason): failStart(reason, &step)
        case .adopted:
            running = true
            mainRuns(start, &step)
        }
    }

    mutating func mainRuns(_ start: Start, _ step: inout Step) {
        guard policy.health != nil else { return becomeReady(start, &step) }
        var probing = start
        probing.step = .probing
        phase = .starting(probing)
        probe(readiness: true, &step)
    }

    mutating func becomeReady(_ start: Start, _ step: inout Step) {
        if policy.hasPostReady, start.step != .postReady {
            // Healthy, but not ready until the warm-up has run (still within the deadline).
            cancel([.readinessRetry, .pidFileRetry], &step)
            var warming = start
            warming.step = .postReady
            phase = .starting(warming)
            nextToken += 1
            postReadyToken = nextToken
            return step.actions.append(.runPostReady(token: nextToken, by: requestedBy))
        }
        postReadyToken = nil
        cancel([.startDeadline, .readinessRetry, .pidFileRetry], &step)
        phase = .ready(lingerUntil: nil)
        lastHealth = "ok"
        lastPassedAt = step.now
        step.actions.append(.record(.ready(startupMs: step.now - start.begunAt, reason: start.reason), by: requestedBy))
        let starter = start.startedBy
        let acquirers = takeWaiters()
        for waiter in acquirers { step.actions.append(.answer(waiter, .ready(started: waiter == starter))) }
        for waiter in takeRequesters() { step.actions.append(.answer(waiter, .done(stopped: false))) }
        // Every acquirer may have gone while it started. One still waiting records its lease
        // first, and then the end of a holder that died meanwhile, which stops the service.
        if step.count.isZero && acquirers.isEmpty { lastReferenceGone("last_release", by: .procrefd, nil, &step) }
    }

    mutating func postReadyFinished(_ token: UInt64, _ failure: String?, _ step: inout Step) {
        guard postReadyToken == token, case .starting(let start) = phase, start.step == .postReady else { return }
        postReadyToken = nil
        if let failure { return failStart(failure, &step) }
        becomeReady(start, &step)
    }

    /// Nothing of the start runs (its spawn, or a step before it, failed): stopped, and the
    /// failure counted.
    mutating func failBeforeSpawn(_ reason: String, recorded: String, _ step: inout Step) {
        guard case .starting(let start) = phase else { return }
        cancel([.startDeadline], &step)
        phase = .stopped
        step.actions.append(.record(.startFailed(recorded), by: requestedBy))
        finishFailedStart(reason, start.reason, &step)
    }

    mutating func failStart(_ reason: String, _ step: inout Step) {
        guard case .starting(let start) = phase else { return }
        cancel([.startDeadline, .readinessRetry, .pidFileRetry], &step)
        step.actions.append(.record(.startFailed(reason), by: requestedBy))
        beginStop("start_failed", then: .failedStart(reason, start.reason), &step)
    }

    /// A failed start counts like a restart: past the limit the service is `failed`, so
    /// acquires get a quick refusal instead of each waiting for another doomed start.
    mutating func finishFailedStart(_ reason: String, _ startReason: StartReason, _ step: inout Step) {
        for waiter in takeWaiters() + takeRequesters() { step.actions.append(.answer(waiter, .refused(.startFailed(reason)))) }
        if startReason == .restart { return planRestart(&step) }
        if startReason == .recover { step.actions.append(.record(.recoveryFailed(reason), by: requestedBy)) }
        restarts.removeAll { step.now - $0 > Int64(policy.restartWindowMs) }
        restarts.append(step.now)
        guard restarts.count > policy.restartLimit else { return }
        let failure = "\(restarts.count) failed starts within \(policy.restartWindowMs) ms"
        phase = .failed(failure)
        step.actions.append(.record(.failed(failure, count: nil), by: requestedBy))
    }
}
