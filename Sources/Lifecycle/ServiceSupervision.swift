import AuditStore
import Foundation
import Posix

/// Why a running service counts as unhealthy: the last probe's failure, after how many
/// failed probes in a row.
struct HealthFailure: Sendable, Equatable {
    let reason: String
    let probes: Int
}

/// procref's callbacks made into a supervisor: on_health_check on every acquire but the
/// first, on_recover when it fails, restarts with backoff after a crash, linger after the
/// last release, and a failed state after too many restarts.
extension ManagedService {
    /// Runs the health check against the running service. nil when healthy, otherwise the
    /// last failure. A probe that passed within `health.fresh_ms` covers the call, so a
    /// burst of acquires (serialised by the service lock) shares one probe. A failed probe
    /// is retried `health.interval_ms` later, up to `health.failures` probes in a row,
    /// before the service counts as unhealthy. Every failed probe is in `last_health`.
    func checkHealth() async -> HealthFailure? {
        guard let main = pid, isRunning else { return HealthFailure(reason: "not running", probes: 0) }
        let definition = self.definition
        guard let health = definition.health else { return nil }
        let fresh = state.withLock { state in state.lastPassedAt.map { monotonicMilliseconds() - $0 < Int64(health.freshMs) } ?? false }
        if fresh { return nil }
        let checker = HealthChecker(spawner: context.spawner)
        let environment = self.environment(definition)
        var failure: HealthFailure?
        for attempt in 1...health.failures {
            let now = monotonicMilliseconds()
            let proven = state.withLock { $0.ownershipProvenAt.map { now - $0 < 1_000 } ?? false }
            let reason = await checker.failure(
                of: health, main: main, members: { [processes] in processes.members(main: main) }, environment: environment,
                verifyOwnership: !proven)
            guard let reason else {
                state.withLock {
                    $0.lastHealth = "ok"
                    $0.lastPassedAt = monotonicMilliseconds()
                    if !proven { $0.ownershipProvenAt = now }
                }
                return nil
            }
            failure = HealthFailure(reason: reason, probes: attempt)
            state.withLock { $0.lastHealth = reason }
            Telemetry.healthCheckFailed(service: name)
            guard attempt < health.failures, isRunning else { break }
            try? await Task.sleep(for: .milliseconds(health.intervalMs))
        }
        return failure
    }

    /// Restarts an unhealthy service in place (stop with the stop policy, start, wait
    /// ready). Records `service.unhealthy`, then `service.recovered` or
    /// `service.recovery_failed`. Call with `lock` held.
    func recover(actor: String, failure: HealthFailure, count: Int) async throws(LifecycleError) {
        setState(.unhealthy)
        context.recordLogged(NewEvent(.serviceUnhealthy, service: name, pid: pid, actor: actor, detail: [
            "reason": .string(failure.reason), "failed_probes": .int(Int64(failure.probes)),
        ]))
        setState(.recovering)
        Telemetry.restarted(service: name, cause: "unhealthy")
        await stop(actor: actor, reason: "unhealthy")
        do {
            try await start(actor: actor, count: count, reason: "recover")
        } catch {
            context.recordLogged(NewEvent(.serviceRecoveryFailed, service: name, actor: actor, detail: ["reason": .string(error.description)]))
            throw error
        }
        context.recordLogged(NewEvent(.serviceRecovered, service: name, pid: pid, actor: actor))
    }

    /// The failure that put the service in `failed`, if it is there.
    var failureReason: String? { state.withLock { $0.state == .failed ? $0.failureReason : nil } }

    // MARK: Crash restarts

    /// The main process died while leased. Clean up its group, then restart with backoff while
    /// the kernel still counts leases, up to restart_limit within restart_window_ms.
    func handleCrash(of process: PidFD) async {
        await lock.lock()
        guard state.withLock({ $0.process === process }) else {
            lock.unlock()
            return
        }
        await stop(actor: EventActor.procrefd, reason: "exited")
        lock.unlock()
        await restartWhileCounted()
    }

    private func restartWhileCounted() async {
        while true {
            await lock.lock()
            let count = (try? kernelCount()) ?? 0
            guard count > 0, !isRunning, currentState == .stopped || currentState == .recovering else {
                if currentState == .recovering { setState(.stopped) }
                lock.unlock()
                return
            }
            let definition = self.definition
            let plan = state.withLock { state -> (delayMs: Int, generation: Int, failure: String?) in
                let now = monotonicMilliseconds()
                state.restarts.removeAll { now - $0 > Int64(definition.restartWindowMs) }
                if state.restarts.count >= definition.restartLimit {
                    state.state = .failed
                    state.failureReason = "\(state.restarts.count) restarts within \(definition.restartWindowMs) ms"
                    return (0, state.generation, state.failureReason)
                }
                var delay = definition.restartBackoffMs
                for _ in 0..<state.restarts.count where delay < definition.restartBackoffMaxMs { delay *= 2 }
                delay = min(delay, definition.restartBackoffMaxMs)
                state.restarts.append(now)
                state.state = .recovering
                state.generation += 1
                return (delay, state.generation, nil)
            }
            if let failure = plan.failure {
                context.recordLogged(NewEvent(.serviceFailed, service: name, detail: ["reason": .string(failure), "count": .int(Int64(count))]))
                lock.unlock()
                return
            }
            context.recordLogged(NewEvent(.serviceRestarting, service: name, detail: [
                "backoff_ms": .int(Int64(plan.delayMs)), "attempt": .int(Int64(state.withLock { $0.restarts.count })),
            ]))
            lock.unlock()

            try? await Task.sleep(for: .milliseconds(plan.delayMs))

            await lock.lock()
            // An acquire, a reset or a stop may have acted meanwhile.
            guard state.withLock({ $0.generation == plan.generation && $0.state == .recovering }), !isRunning else {
                lock.unlock()
                return
            }
            do {
                try await lockKernel()
                defer { unlockKernel() }
                let now = try kernelCount()
                if now == 0 {
                    setState(.stopped)
                    lock.unlock()
                    return
                }
                Telemetry.restarted(service: name, cause: "crash")
                try await start(actor: EventActor.procrefd, count: now, reason: "restart")
                context.recordLogged(NewEvent(.serviceRecovered, service: name, pid: pid, detail: ["after": "exit"]))
                lock.unlock()
                return
            } catch {
                // A failed start counts as another restart; loop to apply the policy.
                context.logger.warning("restart of \(name) failed: \(error)")
                lock.unlock()
            }
        }
    }

    /// A start that failed counts like a restart: after restart_limit of them within
    /// restart_window_ms the service is `failed`, so acquires get a quick 503 instead of
    /// each waiting for another doomed start.
    func noteFailedStart(actor: String) {
        let definition = self.definition
        let failure = state.withLock { state -> String? in
            let now = monotonicMilliseconds()
            state.restarts.removeAll { now - $0 > Int64(definition.restartWindowMs) }
            state.restarts.append(now)
            guard state.restarts.count > definition.restartLimit else { return nil }
            state.state = .failed
            state.failureReason = "\(state.restarts.count) failed starts within \(definition.restartWindowMs) ms"
            return state.failureReason
        }
        if let failure {
            context.recordLogged(NewEvent(.serviceFailed, service: name, actor: actor, detail: ["reason": .string(failure)]))
        }
    }

    /// Leaves `failed`: clears the restart history and, if leases still count, starts again.
    func reset(actor: String) async throws(LifecycleError) {
        guard currentState == .failed else { throw .serviceNotFailed(name) }
        state.withLock {
            $0.state = .stopped
            $0.restarts = []
            $0.failureReason = nil
        }
        let count = try kernelCount()
        try context.record(NewEvent(.serviceReset, service: name, actor: actor, detail: ["count": .int(Int64(count))]))
        if count > 0 {
            Telemetry.restarted(service: name, cause: "reset")
            try await start(actor: actor, count: count, reason: "reset")
        }
    }

    /// Admin restart: stop and start while leases stay granted.
    func restart(actor: String) async throws(LifecycleError) {
        guard isRunning else { throw .serviceNotRunning(name) }
        let count = try kernelCount()
        Telemetry.restarted(service: name, cause: "admin")
        await stop(actor: actor, reason: "admin_restart")
        try await start(actor: actor, count: count, reason: "admin_restart")
    }

    // MARK: Linger

    /// The kernel count reached 0 (call with `lock` held): stop now, or after linger_ms
    /// unless an acquire comes first.
    func lastReferenceGone(actor: String, reason: String) async {
        guard isRunning else { return }
        let linger = definition.lingerMs
        guard linger > 0 else {
            await stop(actor: actor, reason: reason)
            return
        }
        let generation = state.withLock { state -> Int in
            state.generation += 1
            state.lingerUntil = Date().addingTimeInterval(Double(linger) / 1000)
            return state.generation
        }
        Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(linger))
            guard let self else { return }
            await self.lock.lock()
            defer { self.lock.unlock() }
            guard self.state.withLock({ $0.generation == generation && $0.lingerUntil != nil }) else { return }
            do {
                try await self.lockKernel()
                defer { self.unlockKernel() }
                if try self.kernelCount() == 0 { await self.stop(actor: EventActor.procrefd, reason: "linger_expired") }
            } catch {
                self.context.logger.error("linger stop of \(self.name): \(error)")
            }
        }
    }

    /// An acquire during linger keeps the service: the pending stop is cancelled.
    /// Returns whether a linger was pending.
    @discardableResult
    func cancelLinger() -> Bool {
        state.withLock { state in
            guard state.lingerUntil != nil else { return false }
            state.generation += 1
            state.lingerUntil = nil
            return true
        }
    }

}
