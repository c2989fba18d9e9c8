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
    /// The state dir's identity (see `CoordinatorConfig.scope`).
    let scope: String
    /// `<procrefd's cgroup>/procrefd-<scope>`, where each service gets a cgroup; nil where
    /// cgroup v2 is not writable (services are then found by their environment marker).
    let cgroupRoot: Cgroup?

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

/// One shared service: its definition, kernel semaphore set, processes, and state. Every
/// start, stop, recovery and lease change of the service runs under `lock`, so first/last
/// decisions and process changes never interleave. Supervision (health on acquire, crash
/// restarts, linger, reset) is in ServiceSupervision.swift.
final class ManagedService: Sendable {
    let name: String
    let semaphores: SemaphoreSet
    let lock = AsyncLock()
    let context: LifecycleContext
    /// Every process of the service, the main one's descendants and strays included.
    let processes: ServiceProcesses

    struct State {
        var definition: ServiceDefinition
        var state: ServiceState = .stopped
        /// The main process: the one started, or the one its pid_file names.
        var process: PidFD?
        /// The exit watcher saw the main process end.
        var exited = false
        /// How it ended; nil when it was not our child (adopted after a restart).
        var exitStatus: ExitStatus?
        var lastHealth: String?
        /// When a health probe last passed (monotonic ms): within `health.fresh_ms` it
        /// covers later acquires.
        var lastPassedAt: Int64?
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
        self.processes = ServiceProcesses(scope: context.scope, service: name, cgroupRoot: context.cgroupRoot)
        self.state = Mutex(State(definition: definition))
    }

    var definition: ServiceDefinition { state.withLock { $0.definition } }

    func redefine(_ definition: ServiceDefinition) { state.withLock { $0.definition = definition } }

    var currentState: ServiceState { state.withLock { $0.state } }
    var pid: Int32? { state.withLock { $0.process?.pid } }
    var lastHealth: String? { state.withLock { $0.lastHealth } }

    /// True while the service's main process runs.
    var isRunning: Bool { state.withLock { $0.process != nil && !$0.exited } }

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
            $0.exited = false
            $0.exitStatus = nil
            $0.state = .ready
        }
        watchExit(of: process)
    }

    // MARK: Start

    /// Starts the service and waits until its health check passes (without one, it is
    /// ready once running). The service runs in its own process group, in its own cgroup
    /// where there is one, with its marker in its environment. With `pid_file` the start
    /// command must exit 0 once the daemon it forked runs, and the file names the main
    /// process. On failure everything the start left is stopped and
    /// `service.start_failed` recorded. Call with `lock` held.
    func start(actor: String, count: Int, reason: String = "acquire") async throws(LifecycleError) {
        let definition = self.definition
        let environment = self.environment(definition)
        let begun = monotonicMilliseconds()
        // Leftovers of an earlier run would hold its port or files: nothing of it may run now.
        await stopStrays(actor: actor)
        if let pidFile = definition.pidFile { try? Files.remove(pidFile) }  // a stale one must not name the new process

        let launcher: PidFD
        do {
            launcher = try spawnMain(definition, environment: environment)
        } catch {
            setState(.stopped)
            try context.record(NewEvent(.serviceStartFailed, service: name, actor: actor, detail: ["reason": .string("spawn: \(error)")]))
            if reason != "restart" { noteFailedStart(actor: actor) }  // the restart loop counts its own
            throw .startFailed(service: name, reason: "spawn \(definition.start[0]): \(error)")
        }
        state.withLock {
            $0.process = launcher
            $0.exited = false
            $0.exitStatus = nil
            $0.state = .starting
            $0.ownershipProvenAt = nil
            $0.lastPassedAt = nil
        }
        watchExit(of: launcher)
        FaultPoint.hit(.afterServiceSpawn)
        try context.write { tx in
            try tx.updateServiceProcess(name: name, state: "starting", pid: launcher.pid, startTime: launcher.identity.startTime)
            try tx.append(NewEvent(.serviceStarting, service: name, pid: launcher.pid, actor: actor, detail: [
                "count": .int(Int64(count)), "argv0": .string(definition.start[0]), "reason": .string(reason),
                "tracking": .string(processes.cgroup == nil ? "marker" : "cgroup"),
            ]))
        }

        let deadline = begun + Int64(definition.readyTimeoutMs)
        var failure: String?
        if let pidFile = definition.pidFile {
            failure = await adoptForkedMain(launcher: launcher, pidFile: pidFile, deadline: deadline)
        }
        if failure == nil { failure = await waitReady(definition: definition, environment: environment, deadline: deadline) }
        if let failure {
            try context.record(NewEvent(.serviceStartFailed, service: name, pid: launcher.pid, actor: actor,
                                        detail: ["reason": .string(failure)]))
            await stop(actor: actor, reason: "start_failed")
            if reason != "restart" { noteFailedStart(actor: actor) }
            throw .startFailed(service: name, reason: failure)
        }
        let main = state.withLock { state -> PidFD in
            state.state = .ready
            state.lastHealth = "ok"
            state.lastPassedAt = monotonicMilliseconds()
            return state.process ?? launcher
        }
        try context.write { tx in
            try tx.updateServiceProcess(name: name, state: "ready", pid: main.pid, startTime: main.identity.startTime)
            try tx.append(NewEvent(.serviceReady, service: name, pid: main.pid, actor: actor,
                                   detail: ["startup_ms": .int(monotonicMilliseconds() - begun)]))
        }
    }

    private func spawnMain(_ definition: ServiceDefinition, environment: [String: String]) throws(SystemCallError) -> PidFD {
        var options = Spawner.Options()
        options.newProcessGroup = true
        options.workingDirectory = definition.cwd
        let log = try Descriptor.openLog("\(context.logsDirectory)/\(name).log")
        defer { Descriptor.close(log) }
        options.standardOutput = log
        options.standardError = log
        let join = try processes.joinDescriptor()
        defer { if let join { Descriptor.close(join) } }
        options.cgroupProcs = join ?? -1
        let identity = try context.spawner.spawn(arguments: definition.start, environment: environment, options: options)
        return try PidFD(child: identity)
    }

    /// pid_file mode (systemd's Type=forking): waits for the start command to exit 0, then
    /// for the pid file to name a live process of the service, which becomes the main
    /// process. nil when it did, otherwise why not.
    private func adoptForkedMain(launcher: PidFD, pidFile: String, deadline: Int64) async -> String? {
        while !state.withLock({ $0.exited }) {
            if monotonicMilliseconds() >= deadline { return "the start command did not exit (pid_file mode expects it to once the daemon runs)" }
            try? await Task.sleep(for: .milliseconds(10))
        }
        let status = state.withLock { $0.exitStatus }
        guard status == .exited(code: 0) else {
            return "the start command ended with \(ExitStatus.describe(status)) (pid_file mode expects exit code 0)"
        }
        while true {
            if let text = readSmallFile(pidFile, limit: 64), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                pid > 1, processes.members(main: nil).contains(pid), let identity = ProcessIdentity.of(pid: pid)
            {
                // Reparented to procrefd (a subreaper): its exit status is ours to read.
                Children.claim(pid)
                if let main = try? PidFD(identity: identity) {
                    state.withLock {
                        $0.process = main
                        $0.exited = false
                        $0.exitStatus = nil
                    }
                    watchExit(of: main)
                    return nil
                }
            }
            if monotonicMilliseconds() >= deadline { return "\(pidFile) names no live process of the service" }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The service's environment: PATH, HOME, LANG, TZ from procrefd, then its own `env`,
    /// then its marker (which the service cannot override).
    func environment(_ definition: ServiceDefinition) -> [String: String] {
        var environment = Self.inheritedEnvironment
        environment.merge(definition.env) { $1 }
        let marker = processes.marker.split(separator: "=", maxSplits: 1)
        environment[String(marker[0])] = String(marker[1])
        return environment
    }

    /// Read once: building ProcessInfo's environment costs tens of µs, and health checks
    /// run on every acquire.
    static let inheritedEnvironment = ProcessInfo.processInfo.environment.filter { ["PATH", "HOME", "LANG", "TZ"].contains($0.key) }

    /// Polls the health check until it passes, the main process exits, or the deadline.
    /// Returns nil when ready, otherwise why not. Start-up polls are not health failures.
    private func waitReady(definition: ServiceDefinition, environment: [String: String], deadline: Int64) async -> String? {
        let checker = HealthChecker(spawner: context.spawner)
        var lastFailure = "no health check passed"
        while true {
            let (main, exited, status) = state.withLock { ($0.process?.pid, $0.exited, $0.exitStatus) }
            guard let main, !exited else { return "exited during start-up with \(ExitStatus.describe(status))" }
            guard let health = definition.health else { return nil }
            guard let failure = await checker.failure(of: health, main: main, members: { [processes] in processes.members(main: main) },
                                                      environment: environment)
            else { return nil }
            lastFailure = failure
            state.withLock { $0.lastHealth = failure }
            if monotonicMilliseconds() >= deadline {
                return "not healthy within \(definition.readyTimeoutMs) ms (last: \(lastFailure))"
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    // MARK: Stop

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
        processes.removeCgroup()
        let status = state.withLock { state -> ExitStatus? in
            state.state = .stopped
            state.process = nil
            return state.exitStatus
        }
        var detail: [String: DetailValue] = [
            "reason": .string(reason), "signal": .string(outcome == .killed ? "KILL" : definition.stopSignal.uppercased()),
        ]
        if process != nil { detail["exit"] = .string(ExitStatus.describe(status)) }
        do {
            try context.write { tx in
                try tx.updateServiceProcess(name: name, state: "stopped", pid: nil, startTime: nil)
                try tx.append(NewEvent(.serviceStopped, service: name, pid: process?.pid, actor: actor, detail: detail))
            }
        } catch {
            context.logger.error("cannot record stop of \(name): \(error)")
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
            state.exited = true
            state.exitStatus = status
            return state.state == .ready || state.state == .unhealthy
        }
        guard unexpected else { return }
        context.recordLogged(NewEvent(.serviceExited, service: name, pid: process.pid,
                                      detail: ["exit": .string(ExitStatus.describe(status))]))
        Task { [weak self] in await self?.handleCrash(of: process) }
    }
}
