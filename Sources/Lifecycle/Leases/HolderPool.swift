import Foundation
import Glibc
import Posix
import Synchronization

/// Starts lease holders. A few idle `procref-holder --pool` processes wait, each on its own
/// socket, holding nothing; taking one is a socket round trip (~tens of µs) instead of a
/// spawn and exec (~0.2 ms here). The pool is refilled in the background; an idle holder
/// whose socket closes (procrefd gone) exits on its own.
final class HolderPool: Sendable {
    let loop: IOLoop
    let executable: String
    let spawner: Spawner
    let size: Int
    /// Passed to each holder as descriptor 4 (see `ReleaseReports`).
    let releaseReports: Int32
    /// How long a holder may take to report that it holds its reference.
    let reportTimeoutMs = 5_000

    enum Failure: Error {
        case clientGone
        case other(String)
    }

    private struct Idle: Sendable {
        let process: PidFD
        let socket: Int32
    }

    private struct State {
        var idle: [Idle] = []
        /// The refill thread is alive (it ends after a quiet second).
        var refillerRunning = false
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

    /// A holder holding one reference on `semaphoreID`, with the kernel count including it.
    /// On failure nothing is left running.
    func launch(semaphoreID: Int32, ttlMs: Int64?, clientPID: Int32?) async throws(Failure) -> PidFD {
        defer { refillInBackground() }
        let command = Array("\(semaphoreID) \(ttlMs ?? 0) \(clientPID ?? 0)\n".utf8)
        // An idle holder may have died meanwhile: then try a fresh one.
        for attempt in 0..<2 {
            let idle: Idle
            if attempt == 0, let pooled = state.withLock({ $0.idle.popLast() }) {
                idle = pooled
            } else {
                do { idle = try spawnIdle() } catch { throw .other("cannot start \(executable): \(error)") }
            }
            // A line into an idle socket's empty buffer: the write cannot block.
            guard Descriptor.writeAll(idle.socket, command) else {
                Descriptor.close(idle.socket)
                await discard(idle.process)
                continue
            }
            let report = await loop.readLine(idle.socket, timeoutMs: reportTimeoutMs)
            Descriptor.close(idle.socket)
            if report == "acquired" { return idle.process }
            await discard(idle.process)
            if let report, report.hasPrefix("error client") { throw .clientGone }
            if report != nil || attempt == 1 {
                throw .other("holder reported \(report.map { $0.debugDescription } ?? "nothing")")
            }
        }
        throw .other("no holder could be started")
    }

    /// Stops the idle holders (they hold nothing) and reaps them.
    func shutdown() async {
        let idle = state.withLock { state -> [Idle] in
            state.closed = true
            defer { state.idle = [] }
            return state.idle
        }
        refillWanted.signal()  // the refill thread sees `closed` and ends
        for holder in idle {
            Descriptor.close(holder.socket)
            await discard(holder.process)
        }
    }

    private func spawnIdle() throws(SystemCallError) -> Idle {
        let pair = try SocketPair()
        var options = Spawner.Options()
        options.newSession = true
        options.passedDescriptor = pair.second
        options.secondPassedDescriptor = releaseReports
        do {
            let identity = try spawner.spawn(arguments: [executable, "--pool", Self.padding], environment: [:], options: options)
            Descriptor.close(pair.second)
            return Idle(process: try PidFD(child: identity), socket: pair.first)
        } catch {
            Descriptor.close(pair.first)
            Descriptor.close(pair.second)
            throw error
        }
    }

    /// Kills and reaps a holder that never took a lease.
    private func discard(_ process: PidFD) async {
        await Teardown(loop: loop).kill(process.identity)
        _ = process.reap()
    }

    /// Asks the refill thread for more idle holders, starting it if it is not running. One
    /// long-lived thread rather than one per refill: a thread's start and exit cost about as
    /// much as the socket round trip the pool saves.
    private func refillInBackground() {
        let startThread = state.withLock { state -> Bool in
            guard !state.closed, state.idle.count < size, !state.refillerRunning else { return false }
            state.refillerRunning = true
            return true
        }
        if startThread {
            Thread.detachNewThread { [self] in refillUntilQuiet() }
        } else {
            refillWanted.signal()
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
                if !kept {
                    // The refill thread is its own, not the cooperative pool's: it may wait.
                    Descriptor.close(idle.socket)
                    try? idle.process.signal(SIGKILL)
                    _ = idle.process.waitForExit(timeoutMs: 1_000)
                }
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
