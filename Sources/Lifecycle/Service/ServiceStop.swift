import AuditStore
import FoundationEssentials
import Logging
import Posix
import LifecycleModel
import Synchronization

/// The executor's stop actions (every process of the service, through the one `Teardown`)
/// and the records the machine asks for.
extension ServiceExecutor {
    /// Stops every process of the service: stop_signal, up to stop_timeout_ms, then SIGKILL.
    /// Records `service.stopping` and `service.stopped` (with the signal that ended it) when
    /// something ran, then reports `teardownFinished`.
    func teardown(reason: String, actor: Principal) async {
        let (main, ended, definition) = shared.withLock { ($0.main, $0.mainEnded, $0.definition) }
        let running = main != nil && !ended
        // A frozen service takes no signal but SIGKILL: it is thawed first, to stop cleanly.
        processes.cgroup?.setFrozen(false)
        if main != nil || processes.anyAlive(main: nil) {
            let name = self.name
            // Committed while the processes stop (and before `service.stopped`, which is
            // queued behind it): the stop need not wait for a commit to begin, nor the
            // commit for the stop.
            let stopping = NewEvent(.serviceStopping, service: name, pid: main?.pid, actor: actor, detail: ["reason": .string(reason)])
            let stoppingWrite = context.submitRecord { tx in try tx.append(stopping) }
            // A commit runs only when someone awaits it: a child task does, during the stop.
            async let stoppingCommitted: Void = context.committed(stoppingWrite)
            // A stop command stops the service instead of the signal, within the same timeout
            // (it runs in the service's cgroup, so the teardown waits for it too).
            let stopCommand = running ? definition.stopCommand : nil
            async let commandOutcome: HookOutcome? = runStopCommand(stopCommand, timeoutMs: definition.stopTimeoutMs, actor: actor)
            let outcome = await Teardown(loop: context.loop).stop(
                service: processes, main: running ? main?.pid : nil, signal: stopCommand == nil ? definition.stopSignalNumber : nil,
                timeoutMs: definition.stopTimeoutMs)
            let command = await commandOutcome
            do { try await stoppingCommitted } catch {
                context.logger.error("cannot record service.stopping of \(name): \(error)")
            }
            // The exit watcher reaps the main process just after it goes: its status is for the record.
            if let main { await waitForExitReport(of: main, timeoutMs: 1_000) }
            let exit = shared.withLock { $0.mainExit }
            var detail: [String: DetailValue] = [
                "reason": .string(reason),
                "signal": .string(outcome == .killed ? "KILL" : command != nil ? "none (stop_command)" : definition.stopSignal.uppercased()),
            ]
            if main != nil { detail["exit"] = .string(ExitStatus.describe(exit)) }
            // Recorded before it shows: status never reports a state whose record is not committed.
            await context.writeLogged { [detail] tx in
                try tx.updateServiceProcess(name: name, state: "stopped", pid: nil, startTime: nil)
                try tx.append(NewEvent(.serviceStopped, service: name, pid: main?.pid, actor: actor, detail: detail))
            }
        }
        shared.withLock {
            $0.main = nil
            $0.mainEnded = false
            $0.mainExit = nil
        }
        settleDependencies(bind: false)  // a start stopped before it was ready
        send(.teardownFinished)
    }

    private func runStopCommand(_ argv: [String]?, timeoutMs: Int, actor: Principal) async -> HookOutcome? {
        guard let argv else { return nil }
        return await runHook(.stopCommand, argv, timeoutMs: timeoutMs, actor: actor)
    }

    /// Waits until the exit watcher has reported `main`'s exit, at most `timeoutMs`.
    private func waitForExitReport(of main: PidFD, timeoutMs: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let id = newWaiter()
            let waiting = shared.withLock { shared -> Bool in
                guard shared.main === main, !shared.mainEnded else { return false }
                shared.exitReportWaiters[id] = continuation
                return true
            }
            guard waiting else { return continuation.resume() }
            context.loop.schedule(afterMs: timeoutMs) { [weak self] in
                self?.shared.withLock { $0.exitReportWaiters.removeValue(forKey: id) }?.resume()
            }
        }
    }

    /// Stops processes of the service that procrefd does not run: everything of it while
    /// it has no main process (left by a failed start, or started by a procrefd that
    /// crashed before recording them), else what is outside the main process's tree.
    /// Recorded as `service.stopped` with reason `stray`. `thorough` (start-up) also looks
    /// for the marker outside the cgroup.
    func stopStrays(actor: Principal, thorough: Bool = false) async {
        let main = mainProcess?.pid
        guard main == nil || thorough else { return }
        var strays = processes.members(main: nil, thorough: thorough)
        if let main {
            let scan = ProcessScan.now()
            strays.subtract(scan.descendants(of: [main]).union(scan.group(main)))
        }
        guard !strays.isEmpty else { return }
        let definition = self.definition
        let teardown = Teardown(loop: context.loop)
        var signal = definition.stopSignal.uppercased()
        if main == nil {
            let outcome = await teardown.stop(
                service: processes, main: nil, signal: definition.stopSignalNumber, timeoutMs: definition.stopTimeoutMs)
            if outcome == .killed { signal = "KILL" }
        }
        // Beside a running main process (whose cgroup it shares), or found by marker outside
        // the cgroup: one by one.
        let left = strays.compactMap { ProcessIdentity.of(pid: $0) }.filter(\.isAlive)
        if !left.isEmpty {
            signal = "KILL"
            for identity in left { await teardown.kill(identity) }
            Children.reapOrphans()
        }
        await context.recordLogged(NewEvent(.serviceStopped, service: name, pid: main, actor: actor, detail: [
            "reason": "stray", "pids": .string(strays.sorted().map(String.init).joined(separator: ",")), "signal": .string(signal),
        ]))
    }

    /// Writes what the machine asked to record.
    func record(_ note: ServiceNote, actor: Principal, _ state: inout LoopState) async {
        let (name, pid) = (self.name, mainProcess?.pid)
        switch note {
        case let .ready(startupMs, reason):
            settleDependencies(bind: true)
            let main = shared.withLock { $0.main }
            // Queued with the step (committed before it publishes): the answer to an acquire
            // that follows commits with it, in one transaction.
            state.queuedRecords.append(context.submitRecord { tx in
                if let main {
                    try tx.updateServiceProcess(name: name, state: "ready", pid: main.pid, startTime: main.identity.startTime)
                }
                try tx.append(NewEvent(.serviceReady, service: name, pid: pid, actor: actor, detail: ["startup_ms": .int(startupMs)]))
                if reason == .recover { try tx.append(NewEvent(.serviceRecovered, service: name, pid: pid, actor: actor)) }
                if reason == .restart { try tx.append(NewEvent(.serviceRecovered, service: name, pid: pid, detail: ["after": "exit"])) }
            })
        case .startFailed(let reason):
            settleDependencies(bind: false)
            await logPumpDrained(state.logPump)
            let output = outputOfLastStart(since: state.logOffset)
            let spawnFailure = startFailure
            var detail: [String: DetailValue] = ["reason": .string(reason)]
            if spawnFailure == nil {
                detail["log"] = .string(logPath)
                if !output.isEmpty { detail["log_tail"] = .string(output) }
                shared.withLock {
                    $0.startFailure = output.isEmpty ? "\(reason) (nothing in \(logPath))" : "\(reason); last output in \(logPath): \(output)"
                }
            }
            await context.recordLogged(NewEvent(.serviceStartFailed, service: name, pid: pid, actor: actor, detail: detail))
        case .exited(let exit):
            var detail: [String: DetailValue] = ["exit": .string(exit.description)]
            // Killed by the kernel for going past memory_max: said so, and it counts as a crash.
            let (pid, oomKillsAtStart) = (shared.withLock { $0.main?.pid }, state.oomKillsAtStart)
            if let oomKills = caps.oomKills(), oomKills > oomKillsAtStart {
                detail["reason"] = .string("oom_kill")
                detail["oom_kills"] = .int(Int64(oomKills - oomKillsAtStart))
            }
            await context.recordLogged(NewEvent(.serviceExited, service: name, pid: pid, detail: detail))
        case let .unhealthy(reason, probes):
            await context.recordLogged(NewEvent(.serviceUnhealthy, service: name, pid: pid, actor: actor, detail: [
                "reason": .string(reason), "failed_probes": .int(Int64(probes)),
            ]))
        case .recoveryFailed(let reason):
            let message = startFailure ?? reason
            await context.recordLogged(NewEvent(.serviceRecoveryFailed, service: name, actor: actor, detail: [
                "reason": .string(LifecycleError.startFailed(service: name, reason: message).description),
            ]))
        case let .restarting(backoffMs, attempt):
            await context.recordLogged(NewEvent(.serviceRestarting, service: name, detail: [
                "backoff_ms": .int(Int64(backoffMs)), "attempt": .int(Int64(attempt)),
            ]))
        case let .failed(reason, count):
            var detail: [String: DetailValue] = ["reason": .string(reason)]
            if let count { detail["count"] = .int(Int64(count)) }
            await context.recordLogged(NewEvent(.serviceFailed, service: name, actor: actor, detail: detail))
        case .reset(let count):
            await context.recordLogged(NewEvent(.serviceReset, service: name, actor: actor, detail: count.map { ["count": .int(Int64($0))] } ?? [:]))
        case .frozen(let forMs):
            state.queuedRecords.append(context.submitRecord { tx in
                try tx.append(NewEvent(.serviceFrozen, service: name, pid: pid, actor: actor, detail: ["freeze_max_ms": .int(Int64(forMs))]))
            })
        case .thawed(let frozenMs):
            state.queuedRecords.append(context.submitRecord { tx in
                try tx.append(NewEvent(.serviceThawed, service: name, pid: pid, actor: actor, detail: ["frozen_ms": .int(frozenMs)]))
            })
        case .kernelUnreadable(let errno):
            context.logger.error("kernel count of \(name) unreadable (errno \(errno)): nothing is stopped until it reads again")
            await context.recordLogged(NewEvent(.serviceKernelUnreadable, service: name, detail: [
                "errno": .int(Int64(errno)), "semid": .int(Int64(semaphores.id)),
            ]))
        }
    }

    /// The error a refused waiter gets.
    func error(for refusal: ServiceRefusal) -> LifecycleError {
        switch refusal {
        case .failed(let reason): return .serviceFailed(service: name, reason: reason)
        case .startFailed(let reason): return .startFailed(service: name, reason: startFailure ?? reason)
        case .notRunning: return .serviceNotRunning(name)
        case .notFailed: return .serviceNotFailed(name)
        case .busy(let state): return .serviceBusy(name, state.rawValue)
        case .stopped: return .serviceRemoving(name)
        case .slotsExhausted(let position): return .slotsExhausted(service: name, slots: definition.slots ?? 0, position: position)
        case .leftQueue(.serviceStopped): return .serviceRemoving(name)
        case .leftQueue(.shutdown): return .shuttingDown
        case .leftQueue(let reason): return .queueLeft(service: name, reason: reason.rawValue)
        case let .groupFull(group, members):
            return .groupFull(service: name, group: group, members: members.map { GroupMember(service: $0, cost: 0, leases: []) })
        }
    }
}
