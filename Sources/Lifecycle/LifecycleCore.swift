import AuditStore
import FoundationEssentials

/// What the API asks of the lifecycle core. `Coordinator` is the real one; API tests
/// answer with a stand-in, so request and response handling is tested without processes.
public protocol LifecycleCore: Sendable {
    func serviceStatuses() -> [ServiceStatus]
    func serviceSummaries() -> [ServiceSummary]
    /// What the summaries depend on (see `ServiceStamp`); nil: no such shortcut.
    func serviceStamps() -> [ServiceStamp]?
    func serviceStatus(_ name: String) throws(LifecycleError) -> ServiceStatus
    /// Each capacity group: capacity, cost in use, running members, queue.
    func groupStatuses() -> [GroupStatus]
    func defineService(name: String, definition: ServiceDefinition, actor: Principal) async throws(LifecycleError) -> Bool
    func removeService(_ name: String, actor: Principal) async throws(LifecycleError)
    func logPath(of name: String) throws(LifecycleError) -> String
    func restartService(_ name: String, actor: Principal) async throws(LifecycleError)
    func resetService(_ name: String, actor: Principal) async throws(LifecycleError)

    func acquire(service name: String, request: AcquireRequest, actor: Principal, idempotency key: IdempotencyKey?) async throws(LifecycleError)
        -> LeaseGrant
    func release(id: String, actor: Principal) async throws(LifecycleError) -> ReleaseResult
    /// `acquire` (without an idempotency key) tried on the calling thread: see `Attempt`.
    func acquireNow(service name: String, request: AcquireRequest, actor: Principal) -> Attempt<LeaseGrant>
    /// `release` tried on the calling thread: see `Attempt`.
    func releaseNow(id: String, actor: Principal) -> Attempt<ReleaseResult>
    func keepalive(id: String, actor: Principal) async throws(LifecycleError) -> LeaseInfo
    func leaseInfos(service: String?) -> [LeaseInfo]
    func leaseInfo(id: String) throws(LifecycleError) -> LeaseInfo

    func managedProcess(_ pid: Int32) throws(LifecycleError) -> ManagedProcess
    func signalProcess(_ pid: Int32, signalName: String, actor: Principal) async throws(LifecycleError) -> ManagedProcess
    func stopProcess(_ pid: Int32, timeoutMs: Int, actor: Principal) async throws(LifecycleError) -> StopOutcome
}

extension LifecycleCore {
    /// A core without a fast path makes every call the usual way.
    public func acquireNow(service name: String, request: AcquireRequest, actor: Principal) -> Attempt<LeaseGrant> { .notAttempted }
    public func releaseNow(id: String, actor: Principal) -> Attempt<ReleaseResult> { .notAttempted }
    public func serviceStamps() -> [ServiceStamp]? { nil }
    public func groupStatuses() -> [GroupStatus] { [] }
}

extension Coordinator: LifecycleCore {}
