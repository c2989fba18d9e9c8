import AuditStore
import Foundation
@testable import Lifecycle
import LifecycleModel
import Synchronization

/// A lifecycle core that answers from a script: one service, `web`, and what each call
/// should throw. It records the calls it got, so a test can tell that bad input reached
/// nothing.
final class StandInCore: LifecycleCore {
    let calls = Mutex<[String]>([])
    /// Thrown by `acquire` when set.
    let acquireError = Mutex<LifecycleError?>(nil)

    static let lease = LeaseInfo(
        id: "l_00000000000000010000000a", service: "web", holder: "job", holderPID: 4242, clientPID: nil, ttlMs: 30_000,
        acquiredAt: "2026-11-25T18:00:00.000Z", expiresAt: "2026-11-25T18:00:30.000Z", owner: .token("admin"))

    private func note(_ call: String) { calls.withLock { $0.append(call) } }

    private func known(_ name: String) throws(LifecycleError) {
        guard ServiceName.isValid(name) else { throw .invalidName(name) }
        guard name == "web" else { throw .unknownService(name) }
    }

    func serviceStatuses() -> [ServiceStatus] { [status] }

    func serviceSummaries() -> [ServiceSummary] {
        [ServiceSummary(name: "web", state: .ready, pid: 777, count: 1, leases: 1, failureReason: nil,
                        stateSince: Date(timeIntervalSince1970: 0), restarts: 0, lastHealth: "ok")]
    }

    var status: ServiceStatus {
        ServiceStatus(
            name: "web", state: .ready, pid: 777, count: 1, leases: 1, key: 1234, semid: 5, lastHealth: "ok", failureReason: nil,
            lingerUntil: nil, source: "api", definition: ServiceDefinition(start: ["/bin/web"]), stateSince: Date(timeIntervalSince1970: 0),
            restarts: 0)
    }

    func serviceStatus(_ name: String) throws(LifecycleError) -> ServiceStatus {
        try known(name)
        return status
    }

    func defineService(name: String, definition: ServiceDefinition, actor: Principal) async throws(LifecycleError) -> Bool {
        note("define \(name)")
        return name != "web"
    }

    func removeService(_ name: String, actor: Principal) async throws(LifecycleError) {
        note("remove \(name)")
        try known(name)
        throw .serviceLeased(name)
    }

    func logPath(of name: String) throws(LifecycleError) -> String {
        try known(name)
        return "/nonexistent/web.log"
    }

    func restartService(_ name: String, actor: Principal) async throws(LifecycleError) {
        note("restart \(name)")
        try known(name)
        throw .serviceBusy(name, "starting")
    }

    func resetService(_ name: String, actor: Principal) async throws(LifecycleError) {
        note("reset \(name)")
        try known(name)
        throw .serviceNotFailed(name)
    }

    func acquire(service name: String, request: AcquireRequest, actor: Principal, idempotency key: IdempotencyKey?) async throws(LifecycleError)
        -> LeaseGrant
    {
        note("acquire \(name) ttl=\(request.ttlMs.map(String.init) ?? "-") holder=\(request.holder) key=\(key?.key ?? "-")")
        try known(name)
        if let error = acquireError.withLock({ $0 }) { throw error }
        return LeaseGrant(lease: Self.lease, count: 1, started: true)
    }

    func release(id: String, actor: Principal) async throws(LifecycleError) -> ReleaseResult {
        note("release \(id)")
        guard id == Self.lease.id else { throw .unknownLease(id) }
        return ReleaseResult(lease: id, count: 0, stoppedService: true)
    }

    func keepalive(id: String, actor: Principal) async throws(LifecycleError) -> LeaseInfo {
        note("keepalive \(id)")
        guard id == Self.lease.id else { throw .unknownLease(id) }
        return Self.lease
    }

    func leaseInfos(service: String?) -> [LeaseInfo] { service == nil || service == "web" ? [Self.lease] : [] }

    func leaseInfo(id: String) throws(LifecycleError) -> LeaseInfo {
        guard id == Self.lease.id else { throw .unknownLease(id) }
        return Self.lease
    }

    func managedProcess(_ pid: Int32) throws(LifecycleError) -> ManagedProcess { throw .processNotManaged(pid) }

    func signalProcess(_ pid: Int32, signalName: String, actor: Principal) async throws(LifecycleError) -> ManagedProcess {
        note("signal \(pid)")
        throw .processNotManaged(pid)
    }

    func stopProcess(_ pid: Int32, timeoutMs: Int, actor: Principal) async throws(LifecycleError) -> StopOutcome {
        note("stop \(pid)")
        throw .processNotManaged(pid)
    }
}
