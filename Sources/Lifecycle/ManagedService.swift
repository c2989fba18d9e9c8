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
/// decisions and process changes never interleave. Starting is in ServiceStart.swift,
/// stopping in ServiceStop.swift, supervision (health on acquire, crash restarts, linger,
/// reset) in ServiceSupervision.swift.
final class ManagedService: Sendable {
    let name: String
    let semaphores: SemaphoreSet
    let lock = AsyncLock()
    let context: LifecycleContext
    /// Every process of the service, the main one's descendants and strays included.
    let processes: ServiceProcesses

    struct State {
        var definition: ServiceDefinition
        var state: ServiceState = .stopped {
            didSet { if state != oldValue { stateSince = Date() } }
        }
        /// When `state` last changed (wall clock, for status).
        var stateSince = Date()
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

        /// Restarts within the restart window, for status.
        var restartsInWindow: Int {
            let since = monotonicMilliseconds() - Int64(definition.restartWindowMs)
            return restarts.count { $0 >= since }
        }
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

    // MARK: Exit watching

    func watchExit(of process: PidFD) {
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
