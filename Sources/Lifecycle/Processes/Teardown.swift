import FoundationEssentials
import Glibc
import Posix

/// The one way procrefd stops processes: a signal, up to a timeout for the processes to
/// end, then SIGKILL. Waits are exits seen through pidfds on the I/O loop, never polls.
/// Serves every stop path: a service's whole tree (last release, recovery, crash clean-up,
/// failed starts, strays, drain), a process-control stop, a health-check command that ran
/// too long, a holder that does not end.
struct Teardown: Sendable {
    let loop: IOLoop

    /// How a teardown ended.
    enum Outcome: Equatable, Sendable {
        /// Nothing was running.
        case nothingRan
        /// Everything ended within the timeout after the first signal.
        case stopped
        /// SIGKILL was needed.
        case killed
    }

    /// How long processes get to die after SIGKILL before the teardown gives up on them.
    static let killWaitMs = 5_000
    /// Between the two empty looks of a service without a cgroup.
    static let secondLookDelayMs = 20

    // MARK: One process

    /// Stops one process: `signal`, up to `timeoutMs`, then SIGKILL.
    func stop(_ identity: ProcessIdentity, signal: Int32 = SIGTERM, timeoutMs: Int) async -> Outcome {
        guard let process = try? PidFD(identity: identity) else { return .nothingRan }
        try? process.signal(signal)
        if await loop.waitExited(process, timeoutMs: timeoutMs) { return .stopped }
        try? process.signal(SIGKILL)
        _ = await loop.waitExited(process, timeoutMs: Self.killWaitMs)
        return .killed
    }

    /// SIGKILLs a process and waits until it is gone (a holder that never took a lease).
    func kill(_ identity: ProcessIdentity) async {
        guard let process = try? PidFD(identity: identity) else { return }
        try? process.signal(SIGKILL)
        _ = await loop.waitExited(process, timeoutMs: Self.killWaitMs)
    }

    // MARK: A service's tree

    /// Stops every process of a service: `signal` to the main process's group and to every
    /// member (a process that forks meanwhile gets it too), up to `timeoutMs` for all of them
    /// to end, then SIGKILL (`cgroup.kill` where the service has a cgroup). With no signal (a
    /// stop command does the stopping), it only waits, then kills.
    func stop(service processes: ServiceProcesses, main: Int32?, signal: Int32?, timeoutMs: Int) async -> Outcome {
        var signalled: Set<Int32> = []
        defer {
            // Descendants orphaned by the main process's exit are procrefd's children (it is a
            // subreaper): reap them, so that nothing of the service is left, not even a zombie.
            if signalled.contains(where: { $0 != main }) { Children.reapOrphans() }
        }
        if live(processes, main: main).isEmpty {
            // Without a cgroup, look twice a moment apart before calling it empty (see waitGone).
            guard processes.cgroup == nil else { return .nothingRan }
            await loop.sleep(milliseconds: Self.secondLookDelayMs)
            guard !live(processes, main: main).isEmpty else { return .nothingRan }
        }
        if let main, let signal { _ = try? Signals.sendToGroup(main, signal) }
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        if await waitGone(processes, main: main, signal: signal, signalled: &signalled, until: deadline) { return .stopped }
        processes.cgroup?.killAll()
        if let main { _ = try? Signals.sendToGroup(main, SIGKILL) }
        var killed: Set<Int32> = []
        let killDeadline = monotonicMilliseconds() + Int64(Self.killWaitMs)
        _ = await waitGone(processes, main: main, signal: SIGKILL, signalled: &killed, until: killDeadline)
        signalled.formUnion(killed)
        return .killed
    }

    /// Waits until no process of the service is left, sending `signal` to each one not
    /// `signalled` yet. Each round waits for the exit of every process seen, then looks
    /// again; done when nothing is found. Without a cgroup, an empty look is repeated once,
    /// a moment later: a /proc scan is not atomic, and a process that forks during one can
    /// slip past it (seen here with a daemonizing service under load).
    private func waitGone(
        _ processes: ServiceProcesses, main: Int32?, signal: Int32?, signalled: inout Set<Int32>, until deadline: Int64
    ) async -> Bool {
        var emptyLooks = 0
        while true {
            let members = live(processes, main: main)
            if let signal { for pid in members.subtracting(signalled) { Glibc.kill(pid, signal) } }
            signalled.formUnion(members)
            if members.isEmpty {
                emptyLooks += 1
                if emptyLooks == 2 || processes.cgroup != nil { return true }
                await loop.sleep(milliseconds: Self.secondLookDelayMs)
                continue
            }
            emptyLooks = 0
            for pid in members {
                guard let identity = ProcessIdentity.of(pid: pid), let process = try? PidFD(identity: identity) else { continue }
                let left = Int(deadline - monotonicMilliseconds())
                guard left > 0, await loop.waitExited(process, timeoutMs: left) else { return false }
            }
        }
    }

    /// Live processes of the service, the main one included while it runs.
    private func live(_ processes: ServiceProcesses, main: Int32?) -> Set<Int32> {
        var members = processes.members(main: main)
        if let main { members.insert(main) }
        return members.filter { ProcessStat.read(pid: $0)?.isLive == true }
    }
}
