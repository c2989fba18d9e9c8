import AuditStore
import FoundationEssentials
import Logging
import Posix
import Synchronization

/// How a service leases what it requires: the coordinator's own acquire and release (set
/// once by the Coordinator; an executor has no coordinator of its own).
struct DependencyBroker: Sendable {
    let acquire: @Sendable (_ service: String, _ request: AcquireRequest) async -> Result<LeaseGrant, LifecycleError>
    let release: @Sendable (_ leaseID: String) async -> Void
}

/// Dependencies (`requires`), as kernel references. Before a start, a bridge lease on each
/// (a TTL covering the start) starts them all at once and holds them meanwhile. Once the
/// service is ready, each is leased again with `client_pid` = its main process, so the
/// kernel gives the reference back when that process ends, procrefd running or not; then
/// the bridges go. A failed start gives the bridges back.
extension ServiceExecutor {
    /// The holder label of a dependency lease taken for this service.
    var dependencyHolder: String { "requires:\(name)" }

    /// How long a bridge lease lasts: every step a start may take.
    var bridgeTTLMs: Int64 {
        let definition = self.definition
        return Int64(definition.readyTimeoutMs * 2 + definition.stopTimeoutMs + 10_000)
    }

    /// Leases each of `names` at once, as a dependency of this service. All or nothing: on a
    /// failure the others are released, and the reason names the dependency.
    func leaseDependencies(_ names: [String], clientPID: Int32?, ttlMs: Int64?) async -> DependencyLeasing {
        guard let broker = context.dependencyBroker.current else { return .failed("requires: this procrefd cannot lease dependencies") }
        let request = AcquireRequest(holder: dependencyHolder, ttlMs: ttlMs, clientPID: clientPID, waitMs: definition.readyTimeoutMs)
        let results = await withTaskGroup(of: (String, Result<LeaseGrant, LifecycleError>).self) { group in
            for name in names { group.addTask { (name, await broker.acquire(name, request)) } }
            var all: [(String, Result<LeaseGrant, LifecycleError>)] = []
            for await result in group { all.append(result) }
            return all
        }
        let granted = results.compactMap { try? $0.1.get().lease.id }
        guard let (name, failure) = results.sorted(by: { $0.0 < $1.0 }).first(where: { (try? $0.1.get()) == nil }) else { return .granted(granted) }
        for id in granted { await broker.release(id) }
        let reason: String
        if case .failure(let error) = failure { reason = "\(error)" } else { reason = "unknown" }
        return .failed("requires \(name): \(reason)")
    }

    /// What leasing the dependencies came to: every lease's id, or why not.
    enum DependencyLeasing {
        case granted([String])
        case failed(String)
    }

    /// The service is ready: its dependencies are held by its main process from now on, and
    /// the bridges go. On a failed start (`bind` false) the bridges just go.
    func settleDependencies(bind: Bool) {
        let bridges = shared.withLock { shared in
            defer { shared.dependencyBridges = [] }
            return shared.dependencyBridges
        }
        let requires = definition.requires ?? []
        let main = bind ? mainProcess?.pid : nil
        guard !bridges.isEmpty || (main != nil && !requires.isEmpty), let broker = context.dependencyBroker.current else { return }
        Task {
            if let main, !requires.isEmpty, case .failed(let reason) = await leaseDependencies(requires, clientPID: main, ttlMs: nil) {
                context.logger.error("service \(name) runs without holding what it requires: \(reason)")
            }
            for id in bridges { await broker.release(id) }
        }
    }
}
