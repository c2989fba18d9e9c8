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
        guard processes.anyAlive(main: main) || !mainEnded() else { return .nothingRan }
        let signalled = send(signal, main: main)
        defer {
            // Descendants orphaned by the main process's exit are procrefd's children now
            // (it is a subreaper): reap them, so that nothing of the service is left, not
            // even a zombie.
            if signalled.contains(where: { $0 != main }) { Children.reapOrphans() }
        }
        if await waitGone(main: main, mainEnded: mainEnded, timeoutMs: timeoutMs) { return .stopped }
        if let cgroup = processes.cgroup { cgroup.killAll() }
        send(SIGKILL, main: main)
        _ = await waitGone(main: main, mainEnded: mainEnded, timeoutMs: 5_000, killing: true)
        return .killed
    }

    /// Signals the main process's group and every process of the service; returns those.
    @discardableResult
    private func send(_ signal: Int32, main: Int32?) -> Set<Int32> {
        if let main { _ = try? Signals.sendToGroup(main, signal) }
        let members = processes.members(main: main)
        for pid in members { kill(pid, signal) }
        return members
    }

    /// Waits until no process of the service is left. `killing` SIGKILLs anything that
    /// appears meanwhile (a fork racing the kill).
    private func waitGone(main: Int32?, mainEnded: () -> Bool, timeoutMs: Int, killing: Bool = false) async -> Bool {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        let interval: Duration = processes.cgroup == nil ? .milliseconds(20) : .milliseconds(5)
        while !mainEnded() || processes.anyAlive(main: main) {
            if monotonicMilliseconds() >= deadline { return false }
            if killing { send(SIGKILL, main: main) }
            try? await Task.sleep(for: interval)
        }
        return true
    }
}
