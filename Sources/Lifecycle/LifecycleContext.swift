import AuditStore
import Logging
import Posix

/// What services and leases share: the audit store, the I/O loop, the spawner, where logs
/// go, and where services' processes are tracked.
struct LifecycleContext: Sendable {
    let store: AuditStore
    let loop: IOLoop
    let spawner: Spawner
    let logsDirectory: String
    let logger: Logger
    /// The state dir's identity (see `CoordinatorConfig.scope`).
    let scope: String
    /// `<procrefd's cgroup>/procrefd-<scope>`, where each service gets a cgroup; nil where
    /// cgroup v2 is not writable (services are then found by their environment marker).
    let cgroupRoot: Cgroup?
    /// Where the memory, pids and cpu controllers are, for services' caps.
    let controllers: CgroupControllers
    /// The core's settings; a reload replaces the limits and the API services' rules.
    let settings: SharedValue<CoordinatorConfig>
    /// Told the name of a service whose semaphore set a count read found gone (see
    /// `Coordinator.replaceRemovedSet`); set once by the Coordinator.
    let semaphoreSetGone = SharedValue<(@Sendable (String) -> Void)?>(nil)
    /// How services lease what they require; set once by the Coordinator.
    let dependencyBroker = SharedValue<DependencyBroker?>(nil)
    /// Capacity groups' admission; set once by the Coordinator.
    let groups = SharedValue<CapacityGroups?>(nil)

    /// Queues state and event as one transaction, in order behind earlier writes; await
    /// `committed(_:)` for it (see `AuditStore.submit`). Queue first, await later: the next
    /// request's work overlaps the commit, and their writes can share one.
    func submit(_ body: @escaping @Sendable (StoreTransaction) throws -> Void) -> PendingWrite<Void> {
        store.submit(body)
    }

    func committed(_ write: PendingWrite<Void>) async throws(LifecycleError) {
        do { try await write.committed() } catch { throw .storage(String(describing: error)) }
    }

    /// Commits `write` on the calling thread unless another thread is committing (then
    /// false: await `committed`). See `PendingWrite.committedIfIdle`.
    func committedIfIdle(_ write: PendingWrite<Void>) throws(LifecycleError) -> Bool {
        do { return try write.committedIfIdle() != nil } catch { throw .storage(String(describing: error)) }
    }

    /// Calls `body` once `write`'s commit is over (nil: committed), on the committing thread:
    /// for a write `committedIfIdle` left to another thread, when no task should wait.
    func whenCommitted(_ write: PendingWrite<Void>, _ body: @escaping @Sendable (LifecycleError?) -> Void) {
        write.whenCommitted { outcome in
            switch outcome {
            case .success: body(nil)
            case .failure(let error): body(.storage(String(describing: error)))
            }
        }
    }

    /// Writes state and events as one transaction and waits for the commit.
    func write(_ body: @escaping @Sendable (StoreTransaction) throws -> Void) async throws(LifecycleError) {
        try await committed(submit(body))
    }

    /// Records an event (one that changes no table) and waits for the commit.
    func record(_ event: NewEvent) async throws(LifecycleError) {
        try await write { try $0.append(event) }
    }

    /// Queues a record that must not be lost (see `AuditStore.submitRecord`): on a full
    /// disk it waits in memory, in order, and its writer goes on.
    func submitRecord(_ body: @escaping @Sendable (StoreTransaction) throws -> Void) -> PendingWrite<Void> {
        store.submitRecord(body)
    }

    /// Writes a record that must not be lost, logging what still fails (a record the
    /// backlog cannot hold): for paths that must go on.
    func writeLogged(_ body: @escaping @Sendable (StoreTransaction) throws -> Void) async {
        do { try await committed(submitRecord(body)) } catch { logger.error("cannot record: \(error)") }
    }

    /// Records an event that must not be lost, logging what still fails.
    func recordLogged(_ event: NewEvent) async {
        await writeLogged { try $0.append(event) }
    }
}
