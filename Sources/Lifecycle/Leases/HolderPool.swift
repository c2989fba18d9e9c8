import Dispatch
import FoundationEssentials
import Glibc
import Posix
import Synchronization

/// Starts lease holders. A few idle `procref-holder --pool` processes wait, each on its own
/// socket, holding nothing; taking one is a socket round trip (~tens of µs) instead of a
/// spawn and exec (~0.2 ms, and ~1 ms of CPU in a VM where glibc's start-up CPUID probes
/// trap). A holder whose lease was released returns to the pool and serves another, up to
/// `maxLeasesPerHolder`; the pool is refilled in the background. An idle holder whose
/// socket closes (procrefd gone, or retired) exits on its own. Each holder's exit is
/// watched once, for its whole life, and passed to the lease it holds then.
final class HolderPool: Sendable {
    let loop: IOLoop
    let executable: String
    let spawner: Spawner
    let size: Int
    /// Passed to each holder as descriptor 4 (see `ReleaseReports`).
    let releaseReports: Int32
    /// How long a holder may take to report that it holds its reference.
    let reportTimeoutMs = 5_000
    /// A holder retires after this many leases (bounding what a long-lived process may leak).
    static let maxLeasesPerHolder = 1_000
    /// Told when a holder exits while it holds a lease (see `Lease.holderExited`).
    let leaseHolderExited = Mutex<(@Sendable (Lease, ExitStatus?) -> Void)?>(nil)

    enum Failure: Error {
        case clientGone
        case other(String)
    }

    private struct State {
        var idle: [HolderProcess] = []
        /// The refill thread is alive (it ends after a quiet second).
        var refillerRunning = false
        var trimScheduled = false
        var closed = false
    }

    private let state = Mutex(State())
    /// Wakes the refill thread: one signal per holder taken.
    private let refillWanted = DispatchSemaphore(value: 0)
    /// Room in argv for `SEMID TTL CLIENT` once a pooled holder is given its lease.
    private static let padding = String(repeating: "_", count: 48)

    init(loop: IOLoop, executable: String, spawner: Spawner, size: Int, releaseReports: Int32) {
        self.loop = loop
        self.executable = executable
        self.spawner = spawner
        self.size = size
        self.releaseReports = releaseReports
    }

    /// A fresh holder holding one reference on `semaphoreID`, with the kernel count
    /// including it: for when no idle holder could take the lease (see `launchNow`). On
    /// failure nothing is left running.
    /// `clientFD`: the client's pidfd, passed to the holder with its command.
    func launch(semaphoreID: Int32, ttlMs: Int64?, clientPID: Int32?, clientFD: Int32?) async throws(Failure) -> HolderProcess {
        defer { refillInBackground() }
        let holder: HolderProcess
        do { holder = try spawnIdle() } catch { throw .other("cannot start \(executable): \(error)") }
        // A line into a new socket's empty buffer: the write cannot block.
        guard holder.send(HolderProtocol.command(semaphoreID: semaphoreID, ttlMs: ttlMs, clientPID: clientPID), passing: clientFD), let socket = holder.socket else {
            await discard(holder)
            throw .other("holder \(holder.process.pid) ended before its lease")
        }
        let report = await loop.readLine(socket, timeoutMs: reportTimeoutMs)
        if report.map(HolderProtocol.Reply.init) == .acquired { return holder }
        await discard(holder)
        throw Self.failure(report: report)
    }

    /// What a holder's answer other than `acquired` (nil: none) means.
    private static func failure(report: String?) -> Failure {
        if case .error(what: "client", _) = report.map(HolderProtocol.Reply.init) { return .clientGone }
        return .other("holder reported \(report.map { $0.debugDescription } ?? "nothing")")
    }

    /// What `launchNow` did.
    enum LaunchNow {
        /// No idle holder took the lease (none was idle, or the one taken had died, and holds
        /// nothing): launch the usual way, which spawns one.
        case noIdleHolder
        case launched(HolderProcess)
        /// The holder has not answered yet: await the rest.
        case answerPending(@Sendable () async throws(Failure) -> HolderProcess)
        case failed(Failure)
    }

    /// How long `launchNow` blocks its thread for an idle holder's answer (normally tens of
    /// µs) before leaving the rest to the I/O loop.
    static let blockingWaitMs = 20

    /// `launch` on the calling thread, for an idle holder only: one socket round trip, no
    /// thread hop. An idle holder found dead is discarded.
    func launchNow(semaphoreID: Int32, ttlMs: Int64?, clientPID: Int32?, clientFD: Int32?) -> LaunchNow {
        guard let holder = state.withLock({ $0.idle.popLast() }) else { return .noIdleHolder }
        refillInBackground()
        guard !holder.hasExited, holder.send(HolderProtocol.command(semaphoreID: semaphoreID, ttlMs: ttlMs, clientPID: clientPID), passing: clientFD), let socket = holder.socket else {
            Task { await discard(holder) }
            return .noIdleHolder
        }
        switch Descriptor.readLine(socket, timeoutMs: Self.blockingWaitMs) {
        case .line(let report) where HolderProtocol.Reply(report) == .acquired: return .launched(holder)
        case .line(let report):
            do { return .launched(try conclude(holder, report: report)) } catch { return .failed(error) }
        case .closed:
            Task { await discard(holder) }
            return .noIdleHolder
        case .timedOut:
            return .answerPending { [self] () async throws(Failure) -> HolderProcess in
                let report = await loop.readLine(socket, timeoutMs: reportTimeoutMs - Self.blockingWaitMs)
                return try conclude(holder, report: report)
            }
        }
    }

    /// The holder's answer to its lease: `acquired`, or it is discarded and the failure said.
    private func conclude(_ holder: HolderProcess, report: String?) throws(Failure) -> HolderProcess {
        if report.map(HolderProtocol.Reply.init) == .acquired { return holder }
        Task { await discard(holder) }
        throw Self.failure(report: report)
    }

    /// Idle holders waiting for a lease.
    var idleCount: Int { state.withLock { $0.idle.count } }

    /// Takes back a holder whose lease was released (it reported giving its reference back):
    /// it waits for another lease, last in, first out, or retires when the pool is closed or
    /// it served `maxLeasesPerHolder` leases.
    func recycle(_ holder: HolderProcess) {
        holder.detach()
        let (kept, evicted, trim) = state.withLock { state -> (Bool, HolderProcess?, Bool) in
            guard !state.closed, !holder.hasExited, holder.served < Self.maxLeasesPerHolder else { return (false, nil, false) }
            state.idle.append(holder)
            // Up to twice the size under load: keeping the holder just released spares the
            // spawn that would refill the pool after it. Past that, the least recently used
            // idle holder goes; a quiet second later the pool is trimmed back to its size.
            let evicted = state.idle.count > 2 * size ? state.idle.removeFirst() : nil
            let trim = state.idle.count > size && !state.trimScheduled
            if trim { state.trimScheduled = true }
            return (true, evicted, trim)
        }
        if !kept { holder.retire() }
        evicted?.retire()
        if trim { loop.schedule(afterMs: Self.trimDelayMs) { [weak self] in self?.trim() } }
    }

    /// How long the pool may stay over its size after a burst of releases.
    static let trimDelayMs = 1_000

    /// Retires the least recently used idle holders beyond the pool's size.
    private func trim() {
        let extra = state.withLock { state -> [HolderProcess] in
            state.trimScheduled = false
            let count = max(0, state.idle.count - size)
            defer { state.idle.removeFirst(count) }
            return Array(state.idle.prefix(count))
        }
        for holder in extra { holder.retire() }
    }

    /// Stops the idle holders (they hold nothing).
    func shutdown() async {
        let idle = state.withLock { state -> [HolderProcess] in
            state.closed = true
            defer { state.idle = [] }
            return state.idle
        }
        refillWanted.signal()  // the refill thread sees `closed` and ends
        for holder in idle { await discard(holder) }
    }

    private func spawnIdle() throws(SystemCallError) -> HolderProcess {
        // Both ends close with `pair` unless kept: the child's once it has its copy, ours
        // once the holder's record owns it.
        let pair = try SocketPair()
        var options = Spawner.Options()
        options.newSession = true
        options.passedDescriptor = pair.theirs.raw
        options.secondPassedDescriptor = releaseReports
        let process = try PidFD(child: try spawner.spawn(arguments: [executable, HolderProtocol.poolFlag, Self.padding], environment: [:], options: options))
        let holder = HolderProcess(process: process, socket: pair.ours.take())
        do {
            try loop.watchExit(of: process) { [weak self] status in self?.exited(holder, status) }
        } catch {
            try? process.signal(SIGKILL)
            _ = process.waitForExit(timeoutMs: 1_000)
            holder.retire()
            throw error
        }
        return holder
    }

    /// A holder's exit (on the I/O loop): an idle one leaves the pool, a leased one tells its
    /// lease. One being launched is left to the launch, which reads its socket.
    private func exited(_ holder: HolderProcess, _ status: ExitStatus?) {
        let lease = holder.exited(status)
        let wasIdle = state.withLock { state -> Bool in
            guard let index = state.idle.firstIndex(where: { $0 === holder }) else { return false }
            state.idle.remove(at: index)
            return true
        }
        if wasIdle || lease != nil { holder.retireAfterExit() }
        if let lease, let handler = leaseHolderExited.withLock({ $0 }) { handler(lease, status) }
    }

    /// Kills a holder that holds no lease and waits until it is gone (its exit watch reaps it).
    private func discard(_ holder: HolderProcess) async {
        await Teardown(loop: loop).kill(holder.process.identity)
        holder.retire()
    }

    /// Asks the refill thread for more idle holders, starting it if it is not running. One
    /// long-lived thread rather than one per refill: a thread's start and exit cost about as
    /// much as the socket round trip the pool saves.
    private func refillInBackground() {
        enum Wake { case none, signal, start }
        let wake = state.withLock { state -> Wake in
            // Only below half: released holders come back to the pool, so most launches need
            // no spawn to replace them.
            guard !state.closed, state.idle.count < max(1, size / 2) else { return .none }
            if state.refillerRunning { return .signal }
            state.refillerRunning = true
            return .start
        }
        switch wake {
        case .none: break
        case .signal: refillWanted.signal()
        case .start:
            do {
                try DetachedThread.start(name: "procrefd-refill") { [self] in refillUntilQuiet() }
            } catch {
                state.withLock { $0.refillerRunning = false }  // no thread: the next wake tries again
            }
        }
    }

    private func refillUntilQuiet() {
        while true {
            var spawnFailed = false
            while state.withLock({ !$0.closed && $0.idle.count < size }) {
                guard let idle = try? spawnIdle() else {
                    spawnFailed = true  // the next launch spawns directly and reports why
                    break
                }
                let kept = state.withLock { state -> Bool in
                    guard !state.closed else { return false }
                    state.idle.append(idle)
                    return true
                }
                // Its socket closing ends an idle holder; its exit watch reaps it.
                if !kept { idle.retire() }
            }
            // Decided under the lock, so a holder taken meanwhile either sees the thread still
            // running (and signals it) or starts a new one.
            if spawnFailed || refillWanted.wait(timeout: .now() + .seconds(1)) == .timedOut {
                let done = state.withLock { state -> Bool in
                    guard spawnFailed || state.closed || state.idle.count >= size else { return false }
                    state.refillerRunning = false
                    return true
                }
                if done { return }
            }
        }
    }
}
