import AuditStore
import Foundation
import Posix

/// Stopping a service: every process of it, through the one `Teardown`.
extension ManagedService {
    /// Stops every process of the service (see `Teardown`): stop_signal, up to
    /// stop_timeout_ms, then SIGKILL. Records `service.stopping` and `service.stopped` (with
    /// the signal that ended it). Call with `lock` held. Never throws: a storage error is
    /// logged, the processes are stopped.
    func stop(actor: String, reason: String) async {
        let process = state.withLock { $0.process }
        guard process != nil || processes.anyAlive(main: nil) else { return }
        let definition = self.definition
        state.withLock {
            $0.state = .stopping
            $0.generation += 1
            $0.lingerUntil = nil
        }
        context.recordLogged(NewEvent(.serviceStopping, service: name, pid: process?.pid, actor: actor, detail: ["reason": .string(reason)]))

        let outcome = await Teardown(processes: processes).run(
            main: isRunning ? process?.pid : nil, mainEnded: { process == nil || state.withLock { $0.exited } },
            signal: definition.stopSignalNumber, timeoutMs: definition.stopTimeoutMs)
        var detail: [String: DetailValue] = [
            "reason": .string(reason), "signal": .string(outcome == .killed ? "KILL" : definition.stopSignal.uppercased()),
        ]
        if process != nil { detail["exit"] = .string(ExitStatus.describe(state.withLock { $0.exitStatus })) }
        // Recorded before it shows, as for ready.
        do {
            try context.write { tx in
                try tx.updateServiceProcess(name: name, state: "stopped", pid: nil, startTime: nil)
                try tx.append(NewEvent(.serviceStopped, service: name, pid: process?.pid, actor: actor, detail: detail))
            }
        } catch {
            context.logger.error("cannot record stop of \(name): \(error)")
        }
        state.withLock { state in
            state.state = .stopped
            state.process = nil
        }
    }

    /// Stops processes of the service that procrefd does not run: everything of it while
    /// it has no main process (left by a failed start, or started by a procrefd that
    /// crashed before recording them), else what is outside the main process's tree.
    /// Recorded as `service.stopped` with reason `stray`. `thorough` (start-up) also looks
    /// for the marker outside the cgroup. Call with `lock` held.
    func stopStrays(actor: String, thorough: Bool = false) async {
        let main = state.withLock { $0.exited ? nil : $0.process?.pid }
        guard main == nil || thorough else { return }
        var strays = processes.members(main: nil, thorough: thorough)
        if let main {
            let scan = ProcessScan.now()
            strays.subtract(scan.descendants(of: [main]).union(scan.group(main)))
        }
        guard !strays.isEmpty else { return }
        let definition = self.definition
        var signal = definition.stopSignal.uppercased()
        if main == nil {
            let outcome = await Teardown(processes: processes).run(
                main: nil, mainEnded: { true }, signal: definition.stopSignalNumber, timeoutMs: definition.stopTimeoutMs)
            if outcome == .killed { signal = "KILL" }
        }
        // Beside a running main process (whose cgroup it shares), or found by marker outside
        // the cgroup: one by one.
        let left = strays.filter { ProcessIdentity.of(pid: $0)?.isAlive == true }
        if !left.isEmpty {
            signal = "KILL"
            for pid in left { kill(pid, SIGKILL) }
            Children.reapOrphans()
        }
        context.recordLogged(NewEvent(.serviceStopped, service: name, pid: main, actor: actor, detail: [
            "reason": "stray", "pids": .string(strays.sorted().map(String.init).joined(separator: ",")), "signal": .string(signal),
        ]))
    }
}
