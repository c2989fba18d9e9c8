import Foundation
import Posix

/// The one way a service's processes are stopped: the stop signal to every process of the
/// service, up to a timeout for all of them to end, then SIGKILL (`cgroup.kill` where the
/// service has a cgroup). Serves the last release, recovery, crash clean-up, failed
/// starts, stray processes and drain alike.
struct Teardown {
    let processes: ServiceProcesses

    /// How a teardown ended.
    enum Outcome: Equatable {
        /// Nothing of the service was running.
        case nothingRan
        /// Everything ended within the timeout after the stop signal.
        case stopped
        /// SIGKILL was needed.
        case killed
    }

    /// Stops everything of the service. `main` is its main process, if it has one;
    /// `mainEnded` says when the exit watcher has seen it go.
    func run(main: Int32?, mainEnded: () -> Bool, signal: Int32, timeoutMs: Int) async -> Outcome {
        guard !(await nothingLeft(main: main, mainEnded: mainEnded)) else { return .nothingRan }
        var signalled: Set<Int32> = []
        defer {
            // Descendants orphaned by the main process's exit are procrefd's children now
            // (it is a subreaper): reap them, so that nothing of the service is left, not
            // even a zombie.
            if signalled.contains(where: { $0 != main }) { Children.reapOrphans() }
        }
        if let main { _ = try? Signals.sendToGroup(main, signal) }
        if await waitGone(main: main, mainEnded: mainEnded, signal: signal, signalled: &signalled, timeoutMs: timeoutMs) {
            return .stopped
        }
        if let cgroup = processes.cgroup { cgroup.killAll() }
        if let main { _ = try? Signals.sendToGroup(main, SIGKILL) }
        var killed: Set<Int32> = []
        _ = await waitGone(main: main, mainEnded: mainEnded, signal: SIGKILL, signalled: &killed, timeoutMs: 5_000)
        signalled.formUnion(killed)
        return .killed
    }

    /// Waits until no process of the service is left, sending `signal` to every process
    /// of it not `signalled` yet (one that forked meanwhile, say).
    private func waitGone(
        main: Int32?, mainEnded: () -> Bool, signal: Int32, signalled: inout Set<Int32>, timeoutMs: Int
    ) async -> Bool {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        let interval: Duration = processes.cgroup == nil ? .milliseconds(20) : .milliseconds(5)
        while true {
            let members = processes.members(main: main)
            for pid in members.subtracting(signalled) { kill(pid, signal) }
            signalled.formUnion(members)
            if members.isEmpty, await nothingLeft(main: main, mainEnded: mainEnded) { return true }
            if monotonicMilliseconds() >= deadline { return false }
            try? await Task.sleep(for: interval)
        }
    }

    /// Whether the main process has ended and nothing of the service runs. Without a
    /// cgroup, /proc is read twice a moment apart: a scan is not atomic, and a process that
    /// forks while it runs can slip past one.
    private func nothingLeft(main: Int32?, mainEnded: () -> Bool) async -> Bool {
        guard mainEnded(), !processes.anyAlive(main: main) else { return false }
        guard processes.cgroup == nil else { return true }
        try? await Task.sleep(for: .milliseconds(20))
        return !processes.anyAlive(main: main)
    }
}
