import AuditStore
import FoundationEssentials
import Glibc
import Posix

/// Hooks (`pre_start`, `post_ready`, `stop_command`): argv only, run as the service's user,
/// in its cgroup (or with its marker), their output appended to its log. Each run is
/// recorded as `service.hook` (hook, status, duration).
extension ServiceExecutor {
    /// How a hook ended.
    struct HookOutcome: Sendable {
        /// `exit code 0`, `signal KILL`, `timeout after N ms`, or `spawn: ...`.
        let status: String
        let succeeded: Bool
        let durationMs: Int64
        /// The failure's words for a failed start: the status and the log's last lines.
        let failure: String?
    }

    /// Runs `hook` to its end, killing it (its whole process group) past `timeoutMs`, and
    /// records it.
    func runHook(_ hook: ServiceHook, _ argv: [String], timeoutMs: Int, actor: Principal) async -> HookOutcome {
        let definition = self.definition
        let begun = monotonicMilliseconds()
        let logOffset = Files.size(logPath)
        let outcome: HookOutcome
        let pid: Int32?
        do {
            let process = try PidFD(child: try spawnAsService(argv, definition, newProcessGroup: true))
            pid = process.pid
            var timedOut = false
            if !(await context.loop.waitExited(process, timeoutMs: max(1, timeoutMs))) {
                timedOut = true
                _ = try? Signals.sendToGroup(process.pid, SIGKILL)
                _ = await context.loop.waitExited(process, timeoutMs: 5_000)
            }
            let exit = process.reap()
            let status = timedOut ? "timeout after \(timeoutMs) ms" : ExitStatus.describe(exit)
            let succeeded = !timedOut && exit == .exited(code: 0)
            let output = succeeded ? "" : outputOfLastStart(since: logOffset)
            outcome = HookOutcome(
                status: status, succeeded: succeeded, durationMs: monotonicMilliseconds() - begun,
                failure: succeeded ? nil : "\(hook.rawValue) \(status)" + (output.isEmpty ? "" : ": \(output)"))
        } catch {
            pid = nil
            outcome = HookOutcome(
                status: "spawn: \(error)", succeeded: false, durationMs: monotonicMilliseconds() - begun,
                failure: "\(hook.rawValue) could not start: \(error)")
        }
        await context.recordLogged(NewEvent(.serviceHook, service: name, pid: pid, actor: actor, detail: [
            "hook": .string(hook.rawValue), "status": .string(outcome.status), "duration_ms": .int(outcome.durationMs),
        ]))
        return outcome
    }
}
