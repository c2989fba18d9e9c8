import AuditStore
import Foundation
import Logging
import Posix
import Synchronization

/// Where a service is in its lifecycle:
/// stopped → starting → ready ⇄ unhealthy → recovering → ready → stopping → stopped, and
/// failed (after too many restarts, until reset).
public enum ServiceState: String, Sendable, Codable, CaseIterable {
    case stopped
    case starting
    case ready
    case unhealthy
    case recovering
    case stopping
    case failed
}

/// Shared dependencies of services and leases.
struct LifecycleContext: Sendable {
    let store: AuditStore
    let watcher: ExitWatcher
    let spawner: Spawner
    let logsDirectory: String
    let logger: Logger

    /// Records an event in its own transaction (events that change no table).
    func record(_ event: NewEvent) throws(LifecycleError) {
        do { try store.append(event) } catch { throw .storage(String(describing: error)) }
    }

    /// Records state and event together, as one transaction.
    func write(_ body: (StoreTransaction) throws -> Void) throws(LifecycleError) {
        do { try store.write(body) } catch { throw .storage(String(describing: error)) }
    }

    /// Queues state and event as one transaction, in order behind earlier writes; await
    /// `committed(_:)` for it (see `AuditStore.submit`).
    func submit(_ body: @escaping @Sendable (StoreTransaction) throws -> Void) -> PendingWrite<Void> {
        store.submit(body)
    }

    func committed(_ write: PendingWrite<Void>) async throws(LifecycleError) {
        do { try await write.committed() } catch { throw .storage(String(describing: error)) }
    }

    /// Records, logging (not throwing) a storage failure: for paths that must go on.
    func recordLogged(_ event: NewEvent) {
        do { try record(event) } catch { logger.error("cannot record \(event.kind.rawValue): \(error)") }
    }
}

/// One shared service: its definition, kernel semaphore set, process, and state. Every
/// start, stop, recovery and lease change of the service runs under `lock`, so first/last
/// decisions and process changes never interleave. Supervision (health on acquire, crash
/// restarts, linger, reset) is in ServiceSupervision.swift.
final class ManagedService: Sendable {
    let name: String
    let semaphores: SemaphoreSet
    let lock = AsyncLock()
    let context: LifecycleContext

    struct State {
        var definition: ServiceDefinition
        var state: ServiceState = .stopped
        var process: PidFD?
        var exitStatus: ExitStatus?
        var lastHealth: String?
        /// Monotonic ms of recent crash restarts, for the restart limit.
        var restarts: [Int64] = []
        var failureReason: String?
        /// Bumped to cancel a pending linger stop or crash restart.
        var generation = 0
        var lingerUntil: Date?
        /// Defined in the config file: the API cannot replace it.
        var fromConfig = false
        /// Removed from the config while leased: dropped once unleased.
        var pendingRemoval = false
        /// When the health check last proved (through procfs) that the listener is the
        /// service's own; within a second, a successful connect is enough.
        var ownershipProvenAt: Int64?
    }

    let state: Mutex<State>

    init(name: String, definition: ServiceDefinition, semaphores: SemaphoreSet, context: LifecycleContext) {
        self.name = name
        self.semaphores = semaphores
        self.context = context
        self.state = Mutex(State(definition: definition))
    }

    var definition: ServiceDefinition { state.withLock { $0.definition } }

    func redefine(_ definition: ServiceDefinition) { state.withLock { $0.definition = definition } }

    var currentState: ServiceState { state.withLock { $0.state } }
    var pid: Int32? { state.withLock { $0.process?.pid } }
    var lastHealth: String? { state.withLock { $0.lastHealth } }

    /// True while the service's main process runs.
    var isRunning: Bool { state.withLock { $0.process != nil && $0.exitStatus == nil } }

    func setState(_ new: ServiceState) { state.withLock { $0.state = new } }

    // MARK: Kernel lock

    /// Takes the kernel startup lock `[1]` (shared with any other process using the set).
    /// Call only with `lock` held; the in-process lock already serialises procrefd itself.
    func lockKernel() async throws(LifecycleError) {
        let deadline = monotonicMilliseconds() + 10_000
        while true {
            do {
                if try semaphores.tryLockStartup() { return }
            } catch {
                throw .kernel("startup lock of \(name): \(error)")
            }
            if monotonicMilliseconds() > deadline {
                throw .kernel("startup lock of \(name) held by another process for 10 s")
            }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    func unlockKernel() {
        do { try semaphores.unlockStartup() } catch {
            // A service removed under the lock took its set (and the lock) with it.
            if error.errno == .invalidArgument || error.errno == .identifierRemoved { return }
            context.logger.error("cannot release startup lock of \(name): \(error)")
        }
    }

    /// The kernel reference count: the truth about how many leases hold the service.
    func kernelCount() throws(LifecycleError) -> Int {
        do { return try semaphores.count() } catch { throw .kernel("count of \(name): \(error)") }
    }

    // MARK: Adopt

    /// Takes over a service process left running by an earlier procrefd (not our child: its
    /// exit is seen through the pidfd, its status is unknown).
    func adopt(_ process: PidFD) {
        state.withLock {
            $0.process = process
            $0.exitStatus = nil
            $0.state = .ready
        }
        watchExit(of: process)
    }

    // MARK: Start

    /// Starts the service in its own process group and waits until its health check passes
    /// (without one, it is ready once running). On failure it is stopped again and
    /// `service.start_failed` recorded. Call with `lock` held.
    func start(actor: String, count: Int, reason: String = "acquire") async throws(LifecycleError) {
        let definition = self.definition
        var options = Spawner.Options()
        options.newProcessGroup = true
        options.workingDirectory = definition.cwd
        let environment = self.environment(definition)

        let process: PidFD
        let begun = monotonicMilliseconds()
        do {
            let log = try Descriptor.openLog("\(context.logsDirectory)/\(name).log")
            defer { Descriptor.close(log) }
            options.standardOutput = log
            options.standardError = log
            let identity = try context.spawner.spawn(arguments: definition.start, environment: environment, options: options)
            process = try PidFD(child: identity)
        } catch {
            setState(.stopped)
            try context.record(NewEvent(.serviceStartFailed, service: name, actor: actor, detail: ["reason": .string("spawn: \(error)")]))
            if reason != "restart" { noteFailedStart(actor: actor) }  // the restart loop counts its own
            throw .startFailed(service: name, reason: "spawn \(definition.start[0]): \(error)")
        }
        state.withLock {
            $0.process = process
            $0.exitStatus = nil
            $0.state = .starting
            $0.ownershipProvenAt = nil
        }
        watchExit(of: process)
        try context.write { tx in
            try tx.updateServiceProcess(name: name, state: "starting", pid: process.pid, startTime: process.identity.startTime)
            try tx.append(NewEvent(.serviceStarting, service: name, pid: process.pid, actor: actor, detail: [
                "count": .int(Int64(count)), "argv0": .string(definition.start[0]), "reason": .string(reason),
            ]))
        }

        if let failure = await waitReady(definition: definition, group: process.pid, environment: environment) {
            try context.record(NewEvent(.serviceStartFailed, service: name, pid: process.pid, actor: actor,
                                        detail: ["reason": .string(failure)]))
            await stop(actor: actor, reason: "start_failed")
            if reason != "restart" { noteFailedStart(actor: actor) }
            throw .startFailed(service: name, reason: failure)
        }
        state.withLock {
            $0.state = .ready
            $0.lastHealth = "ok"
        }
        try context.write { tx in
            try tx.updateServiceProcess(name: name, state: "ready", pid: process.pid, startTime: process.identity.startTime)
            try tx.append(NewEvent(.serviceReady, service: name, pid: process.pid, actor: actor,
                                   detail: ["startup_ms": .int(monotonicMilliseconds() - begun)]))
        }
    }

    /// The service's environment: PATH, HOME, LANG, TZ from procrefd, then its own `env`.
    func environment(_ definition: ServiceDefinition) -> [String: String] {
        var environment = Self.inheritedEnvironment
        environment.merge(definition.env) { $1 }
        return environment
    }

    /// Read once: building ProcessInfo's environment costs tens of µs, and health checks
    /// run on every acquire.
    static let inheritedEnvironment = ProcessInfo.processInfo.environment.filter { ["PATH", "HOME", "LANG", "TZ"].contains($0.key) }

    /// Polls the health check until it passes, the process exits, or ready_timeout_ms passes.
    /// Returns nil when ready, otherwise why not.
    private func waitReady(definition: ServiceDefinition, group: Int32, environment: [String: String]) async -> String? {
        let deadline = monotonicMilliseconds() + Int64(definition.readyTimeoutMs)
        let checker = HealthChecker(spawner: context.spawner)
        var lastFailure = "no health check passed"
        while true {
            if let status = state.withLock({ $0.exitStatus }) { return "exited during start-up with \(status)" }
            guard let health = definition.health else { return nil }
            guard let failure = await checker.failure(of: health, group: group, environment: environment) else { return nil }
            Telemetry.healthCheckFailed(service: name)
            lastFailure = failure
            state.withLock { $0.lastHealth = failure }
            if monotonicMilliseconds() >= deadline {
                return "not healthy within \(definition.readyTimeoutMs) ms (last: \(lastFailure))"
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    // MARK: Stop

    /// Stops the whole process group: stop_signal, up to stop_timeout_ms, then SIGKILL.
    /// Records `service.stopping` and `service.stopped` (with the signal that ended it). Call
    /// with `lock` held. Never throws: a storage error is logged, the processes are stopped.
    func stop(actor: String, reason: String) async {
        guard let process = state.withLock({ $0.process }) else { return }
        let group = process.pid
        let definition = self.definition
        state.withLock {
            $0.state = .stopping
            $0.generation += 1
            $0.lingerUntil = nil
        }
        context.recordLogged(NewEvent(.serviceStopping, service: name, pid: group, actor: actor, detail: ["reason": .string(reason)]))

        var signal = definition.stopSignal.uppercased()
        _ = try? Signals.sendToGroup(group, definition.stopSignalNumber)
        if !(await waitGone(group: group, timeoutMs: definition.stopTimeoutMs)) {
            signal = "KILL"
            _ = try? Signals.sendToGroup(group, SIGKILL)
            _ = await waitGone(group: group, timeoutMs: 5_000)
        }
        let status = state.withLock { state -> ExitStatus? in
            state.state = .stopped
            state.process = nil
            return state.exitStatus
        }
        var detail: [String: DetailValue] = ["reason": .string(reason), "signal": .string(signal)]
        if let status { detail["exit"] = .string(status.description) }
        do {
            try context.write { tx in
                try tx.updateServiceProcess(name: name, state: "stopped", pid: nil, startTime: nil)
                try tx.append(NewEvent(.serviceStopped, service: name, pid: group, actor: actor, detail: detail))
            }
        } catch {
            context.logger.error("cannot record stop of \(name): \(error)")
        }
    }

    /// Waits until the main process has exited and no process is left in its group.
    private func waitGone(group: Int32, timeoutMs: Int) async -> Bool {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        while true {
            let exited = state.withLock { $0.exitStatus != nil }
            if exited && !Signals.groupExists(group) { return true }
            if monotonicMilliseconds() >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    // MARK: Exit watching

    private func watchExit(of process: PidFD) {
        do {
            try context.watcher.watch(process) { [weak self] status in self?.processExited(process, status) }
        } catch {
            context.logger.error("cannot watch service \(name): \(error)")
        }
    }

    /// Exit watcher callback for the main process. An exit while ready or unhealthy was not
    /// asked for: it is recorded and handed to the restart policy.
    private func processExited(_ process: PidFD, _ status: ExitStatus?) {
        let unexpected = state.withLock { state -> Bool in
            guard state.process === process else { return false }
            state.exitStatus = status ?? .exited(code: -1)
            return state.state == .ready || state.state == .unhealthy
        }
        guard unexpected else { return }
        context.recordLogged(NewEvent(.serviceExited, service: name, pid: process.pid,
                                      detail: ["exit": .string(status?.description ?? "unknown (not our child)")]))
        Task { [weak self] in await self?.handleCrash(of: process) }
    }
}
