import AuditStore
import FoundationEssentials
import Glibc
import Logging
import Posix
import Synchronization
import Wire
import LifecycleModel

/// procrefd's lifecycle core, as the API sees it: a facade over the service registry (one
/// executor and state machine per service), the lease book and the holders. Acquire and
/// release are in Leases/, start-up reconciliation, process control and drain beside them.
public final class Coordinator: Sendable {
    /// The settings in force (a reload may change the limits and `[security]`).
    var config: CoordinatorConfig { context.settings.current }
    let context: LifecycleContext
    let registry: ServiceRegistry
    let leases: LeaseBook
    let holders: HolderPool
    /// Where every lease is born (see `LeaseIssuer`).
    let issuer: LeaseIssuer
    let idempotency = IdempotencyGate()
    let shuttingDown = Atomic<Bool>(false)
    /// Where front doors left by the procrefd before this one come back.
    let rendezvous: DoorRendezvous?

    /// Loads the stored service definitions. Call `reconcile` before serving.
    public init(config: CoordinatorConfig, store: AuditStore, logger: Logger) throws {
        let spawner = Spawner()
        let loop = try IOLoop()
        let cgroupRoot = config.serviceCgroups ? Self.cgroupRoot(scope: config.scope, logger: logger) : nil
        context = LifecycleContext(
            store: store, loop: loop, spawner: spawner, logsDirectory: config.logsDirectory, logger: logger, scope: config.scope,
            cgroupRoot: cgroupRoot, controllers: CgroupControllers.discover(), settings: SharedValue(config))
        leases = LeaseBook(maxLeases: config.maxLeases, maxPerService: config.maxLeasesPerService, maxPerOwner: config.maxLeasesPerUser)
        let releaseReports = try ReleaseReports(loop: loop)
        holders = HolderPool(
            loop: loop, executable: config.holderExecutable, spawner: spawner, size: config.holderPoolSize,
            releaseReports: releaseReports.holderEnd)
        issuer = LeaseIssuer(context: context, holders: holders, releaseReports: releaseReports)
        registry = ServiceRegistry(context: context, issuer: issuer)
        try registry.load()
        let (services, core) = (registry, context)
        rendezvous = config.doorRendezvous.flatMap { path in DoorRendezvous(path: path, context: core) { services.existing($0) } }
        holders.leaseHolderExited.withLock {
            $0 = { [weak self] lease, status in
                if lease.holderExited(status) { self?.handleUnexpectedExit(lease) }
            }
        }
        context.semaphoreSetGone.set { [weak self] name in
            Task { await self?.replaceRemovedSet(of: name) }
        }
        context.groups.set(CapacityGroups(context: context) { [registry] in registry.existing($0) })
        context.dependencyBroker.set(DependencyBroker(
            acquire: { [weak self] service, request in
                guard let self else { return .failure(.shuttingDown) }
                do throws(LifecycleError) { return .success(try await acquire(service: service, request: request, actor: Principal.procrefd)) } catch {
                    return .failure(error)
                }
            },
            release: { [weak self] id in _ = try? await self?.release(id: id, actor: Principal.procrefd) }))
        sweepSemaphoreSets()
    }

    /// `<own cgroup>/procrefd-<scope>` where cgroup v2 is mounted and procrefd may create
    /// cgroups in its own (as under systemd's `Delegate=yes`); nil elsewhere. Created with
    /// the first service's cgroup, removed at drain.
    static func cgroupRoot(scope: String, logger: Logger) -> Cgroup? {
        guard let own = Cgroup.own(), access(own.path, W_OK) == 0 else {
            logger.notice("no writable cgroup v2: services are tracked by their environment marker")
            return nil
        }
        return own.child("procrefd-\(scope)")
    }

    /// Where services' processes are tracked: the cgroup path, or nil for markers.
    public var cgroupRoot: String? { context.cgroupRoot?.path }

    /// The I/O loop (process exits, sockets, timers), for the API's hang-up watches.
    public var loop: IOLoop { context.loop }

    // MARK: Services

    /// Defines or replaces a service. Returns true when it is new. A running service (or
    /// one the kernel still counts) cannot be replaced.
    public func defineService(name: String, definition: ServiceDefinition, actor: Principal) async throws(LifecycleError) -> Bool {
        guard ServiceName.isValid(name) else { throw .invalidName(name) }
        let resolved = try definition.resolvingPrograms(searchPath: Self.ownSearchPath)
        try check(resolved)
        try config.confinement.check(resolved)
        return try await registry.define(name, resolved, actor: actor)
    }

    /// Applies a reload's limits and `[security]` rules: to requests, definitions and starts
    /// that begin after it. What is fixed for the daemon's life (holder, logs, scope, set
    /// mode, cgroups, pool, log pump) stays as it started, whatever `change` does.
    public func reconfigure(_ change: (inout CoordinatorConfig) -> Void) {
        let running = config
        var next = running
        change(&next)
        (next.holderExecutable, next.logsDirectory, next.scope, next.semaphoreMode, next.serviceCgroups, next.holderPoolSize) =
            (running.holderExecutable, running.logsDirectory, running.scope, running.semaphoreMode, running.serviceCgroups, running.holderPoolSize)
        (next.logPumpExecutable, next.doorExecutable, next.doorRendezvous) = (running.logPumpExecutable, running.doorExecutable, running.doorRendezvous)
        context.settings.set(next)
        leases.setLimits(maxLeases: next.maxLeases, maxPerService: next.maxLeasesPerService, maxPerOwner: next.maxLeasesPerUser)
        for service in registry.all where !service.membership.withLock({ $0.fromConfig }) {
            if let rule = service.confinementViolation() {
                context.logger.warning("service \(service.name) breaks the reloaded [security] rules and will not start: \(rule)")
            }
        }
    }

    /// `limits.max_leases` in force.
    public var maxLeases: Int { config.maxLeases }

    /// procrefd's own PATH, where a definition names none.
    static let ownSearchPath = ProcessInfo.processInfo.environment["PATH"]

    /// Validates a definition, and its `slots` against the per-service lease limit.
    func check(_ definition: ServiceDefinition) throws(LifecycleError) {
        do { try definition.validate() } catch { throw .invalidField(error) }
        try checkOwnUser(definition.runAs)
        if let slots = definition.slots, slots > config.maxLeasesPerService {
            throw .invalidField(DefinitionError(field: "slots", message: "must be within 1...\(config.maxLeasesPerService) (limits.max_leases_per_service)"))
        }
        if let group = definition.capacityGroup, config.groups[group] == nil {
            throw .invalidField(DefinitionError(field: "capacity_group", message: "no group \(group) (define it as [groups.\(group)] with a capacity in the config file)"))
        }
        if let group = definition.capacityGroup, let capacity = config.groups[group], (definition.cost ?? 1) > capacity {
            throw .invalidField(DefinitionError(field: "cost", message: "\(definition.cost ?? 1) is more than group \(group)'s capacity \(capacity)"))
        }
        if definition.freezesWhenIdle, context.cgroupRoot == nil {
            throw .invalidField(DefinitionError(
                field: "idle", message: "\"freeze\" needs cgroup v2 service tracking (cgroup.freeze); this procrefd tracks services by their environment marker"))
        }
    }

    /// Makes the config file's services the set of config services (see `ServiceRegistry.applyConfig`).
    public func applyConfigServices(_ definitions: [String: ServiceDefinition], actor: Principal) async throws(LifecycleError)
        -> ConfigServicesChange
    {
        let resolved = try ConfigTables.checked(definitions) { definition throws(LifecycleError) in
            let resolved = try definition.resolvingPrograms(searchPath: Self.ownSearchPath)
            try check(resolved)
            return resolved
        }
        return try await registry.applyConfig(resolved, actor: actor)
    }

    /// Removes an API-defined service (`DELETE /v1/services/{name}`).
    public func removeService(_ name: String, actor: Principal) async throws(LifecycleError) {
        try await registry.removeDefined(name, leases: leases.count(of: name), actor: actor)
    }

    public func groupStatuses() -> [GroupStatus] { context.groups.current?.statuses ?? [] }

    public func serviceStatuses() -> [ServiceStatus] {
        let counts = leases.countsByService
        let graph = DependencyGraph(registry.dependencyEdges)
        return registry.all.map { status($0, leases: counts[$0.name] ?? 0, graph: graph) }
    }

    /// Every service's stamp, sorted by name: while they compare equal, so do the summaries.
    public func serviceStamps() -> [ServiceStamp]? {
        let counts = leases.countsByService
        return registry.all.map { service in
            ServiceStamp(name: service.name, version: service.publishedVersion, count: service.kernelCount().value, leases: counts[service.name] ?? 0)
        }
    }

    /// Every service's summary, sorted by name: the status scrape path, which copies only
    /// the fields it shows.
    public func serviceSummaries() -> [ServiceSummary] {
        let counts = leases.countsByService
        return registry.all.map { service in
            let snapshot = service.snapshot
            return ServiceSummary(
                name: service.name, state: snapshot.state, pid: snapshot.pid, count: service.kernelCount().value,
                leases: counts[service.name] ?? 0, failureReason: snapshot.failureReason, stateSince: snapshot.stateSince,
                restarts: snapshot.restarts, lastHealth: snapshot.lastHealth, slots: snapshot.definition.slots, queued: snapshot.queued,
                runAs: snapshot.definition.runAs)
        }
    }

    public func serviceStatus(_ name: String) throws(LifecycleError) -> ServiceStatus {
        let service = try registry.service(named: name)
        return status(service, leases: leases.count(of: name), graph: DependencyGraph(registry.dependencyEdges))
    }

    func status(_ service: ServiceExecutor, leases: Int, graph: DependencyGraph) -> ServiceStatus {
        let snapshot = service.snapshot
        let count = service.kernelCount()
        var status = ServiceStatus(
            name: service.name, state: snapshot.state, pid: snapshot.pid, count: count.value,
            leases: leases, key: service.semaphores.key, semid: service.semaphores.id, lastHealth: snapshot.lastHealth,
            failureReason: snapshot.failureReason, lingerUntil: snapshot.lingerUntil,
            source: service.membership.withLock { $0.fromConfig } ? "config" : "api", definition: snapshot.definition,
            stateSince: snapshot.stateSince, restarts: snapshot.restarts, queued: snapshot.queued)
        if case .unreadable(let errno) = count { status.countError = "\(String(cString: strerror(errno))) (errno \(errno))" }
        if let door = service.front.withLock({ $0 }) { (status.connections, status.front) = (door.connections, door.addresses) }
        status.requiredBy = graph.requiredBy(service.name)
        return status
    }

    /// Where the service's output goes (`STATE/logs/NAME.log`; it may not exist yet).
    public func logPath(of name: String) throws(LifecycleError) -> String {
        try registry.service(named: name).logPath
    }

    /// Admin restart of a running service; its leases stay granted.
    public func restartService(_ name: String, actor: Principal) async throws(LifecycleError) {
        let service = try registry.service(named: name)
        try service.expectDone(await service.ask { .restartRequested($0, by: actor) })
    }

    /// Takes a service out of `failed`; starts it again if leases still count.
    public func resetService(_ name: String, actor: Principal) async throws(LifecycleError) {
        let service = try registry.service(named: name)
        try service.expectDone(await service.ask { .resetRequested($0, by: actor) })
    }
}

extension ServiceExecutor {
    /// Throws the refusal an admin request got.
    func expectDone(_ answer: ServiceAnswer) throws(LifecycleError) {
        if case .refused(let refusal) = answer { throw error(for: refusal) }
    }
}
