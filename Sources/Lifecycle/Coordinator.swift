import AuditStore
import Foundation
import Logging
import Posix
import Synchronization

/// procrefd's lifecycle core: services, their kernel counts, and the leases held on them.
public final class Coordinator: Sendable {
    let config: CoordinatorConfig
    let context: LifecycleContext
    let holders: HolderPool
    let releaseReports: ReleaseReports
    let services = Mutex(ServiceTable())
    /// Serialises changes to the set of services (definitions, config reloads, removals).
    let registryLock = AsyncLock()
    let leases = Mutex(LeaseTable())
    /// Acquires past the limit check whose lease is not in the table yet.
    let acquiresInFlight = Atomic<Int>(0)
    /// Per service: when the last `lease.refused` was recorded, and refusals since.
    let refusals = Mutex<[String: (lastRecorded: Int64?, suppressed: Int)]>([:])
    /// Idempotency keys whose acquire is under way.
    let inFlightKeys = Mutex<Set<String>>([])
    let shuttingDown = Atomic<Bool>(false)

    /// Loads the stored service definitions. Call `reconcile` before serving.
    public init(config: CoordinatorConfig, store: AuditStore, logger: Logger) throws {
        self.config = config
        let spawner = Spawner()
        let cgroupRoot = config.serviceCgroups ? Self.cgroupRoot(scope: config.scope, logger: logger) : nil
        context = LifecycleContext(
            store: store, watcher: try ExitWatcher(), spawner: spawner,
            logsDirectory: config.logsDirectory, logger: logger, scope: config.scope, cgroupRoot: cgroupRoot)
        releaseReports = try ReleaseReports()
        holders = HolderPool(
            executable: config.holderExecutable, spawner: spawner, size: config.holderPoolSize,
            releaseReports: releaseReports.holderEnd)
        try loadServices()
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

    // MARK: Services

    /// Defines or replaces a service. Returns true when it is new. A running service (or
    /// one the kernel still counts) cannot be replaced.
    public func defineService(name: String, definition: ServiceDefinition, actor: String) async throws(LifecycleError) -> Bool {
        guard ServiceName.isValid(name) else { throw .invalidName(name) }
        do { try definition.validate() } catch { throw .invalidField(error) }
        try checkAllowedPrograms(definition)
        await registryLock.lock()
        defer { registryLock.unlock() }
        if let existing = services.withLock({ $0[name] }) {
            await existing.lock.lock()
            defer { existing.lock.unlock() }
            if existing.state.withLock({ $0.fromConfig }) { throw .definedInConfig(name) }
            guard !existing.isRunning, (try? existing.kernelCount()) ?? 1 == 0 else { throw .serviceRunning(name) }
            try replace(existing, with: definition, fromConfig: false, actor: actor)
            return false
        }
        guard services.withLock({ $0.count }) < config.maxServices else {
            context.recordLogged(NewEvent(.serviceRefused, service: name, actor: actor, detail: [
                "reason": "max_services", "limit": .int(Int64(config.maxServices)),
            ]))
            throw .tooManyServices(limit: config.maxServices)
        }
        try add(name, definition, fromConfig: false, actor: actor)
        return true
    }

    /// Enforces `apiPrograms` on an API definition.
    func checkAllowedPrograms(_ definition: ServiceDefinition) throws(LifecycleError) {
        guard let allowed = config.apiPrograms else { return }
        var programs = [definition.start[0]]
        if case .exec(let argv) = definition.health?.kind, let first = argv.first { programs.append(first) }
        let searchPath = definition.env["PATH"] ?? ProcessInfo.processInfo.environment["PATH"] ?? Spawner.defaultSearchPath
        for program in programs {
            let resolved = Spawner.resolve(program, searchPath: searchPath) ?? program
            guard allowed.contains(resolved) else { throw .programNotAllowed(program) }
        }
    }

    /// Stores a new definition of an existing service; it applies at the next start.
    func replace(_ service: ManagedService, with definition: ServiceDefinition, fromConfig: Bool, actor: String) throws(LifecycleError) {
        let encoded = try Self.encode(definition)
        try context.write { tx in
            try tx.saveService(ServiceRecord(
                name: service.name, definition: encoded, semKey: service.semaphores.key, semID: service.semaphores.id,
                source: fromConfig ? "config" : "api"))
            try tx.append(NewEvent(.serviceDefined, service: service.name, actor: actor,
                                   detail: ["replaced": true, "source": .string(fromConfig ? "config" : "api")]))
        }
        service.redefine(definition)
        service.state.withLock {
            $0.fromConfig = fromConfig
            $0.pendingRemoval = false
        }
    }

    /// Creates a service and its semaphore set. Call with `registryLock` held.
    func add(_ name: String, _ definition: ServiceDefinition, fromConfig: Bool, actor: String) throws(LifecycleError) {
        let encoded = try Self.encode(definition)
        let semaphores = try openSemaphores(for: name)
        do {
            try context.write { tx in
                try tx.saveService(ServiceRecord(
                    name: name, definition: encoded, semKey: semaphores.key, semID: semaphores.id, source: fromConfig ? "config" : "api"))
                try tx.append(NewEvent(.serviceDefined, service: name, actor: actor, detail: [
                    "replaced": false, "source": .string(fromConfig ? "config" : "api"),
                    "key": .int(Int64(semaphores.key)), "semid": .int(Int64(semaphores.id)),
                ]))
            }
        } catch {
            try? semaphores.remove()  // never recorded: nobody else can know it
            throw error
        }
        let service = ManagedService(name: name, definition: definition, semaphores: semaphores, context: context)
        service.state.withLock { $0.fromConfig = fromConfig }
        services.withLock { $0[name] = service }
    }

    static func encode(_ definition: ServiceDefinition) throws(LifecycleError) -> String {
        do { return String(decoding: try JSONEncoder().encode(definition), as: UTF8.self) } catch {
            throw .storage("cannot encode definition: \(error)")
        }
    }

    public func serviceStatuses() -> [ServiceStatus] {
        let counts = leaseCounts()
        return services.withLock { $0.sortedByName() }.map { status($0, leases: counts[$0.name] ?? 0) }
    }

    /// Every service's summary, sorted by name: the status scrape path, which copies only
    /// the fields it shows.
    public func serviceSummaries() -> [ServiceSummary] {
        let counts = leaseCounts()
        return services.withLock { $0.sortedByName() }.map { service in
            // Only the fields shown: this runs on every scrape.
            let (state, pid, failureReason, since, restarts, lastHealth) = service.state.withLock {
                ($0.state, $0.process?.pid, $0.state == .failed ? $0.failureReason : nil, $0.stateSince, $0.restartsInWindow,
                 $0.lastHealth)
            }
            return ServiceSummary(
                name: service.name, state: state, pid: pid, count: try? service.kernelCount(), leases: counts[service.name] ?? 0,
                failureReason: failureReason, stateSince: since, restarts: restarts, lastHealth: lastHealth)
        }
    }

    public func serviceStatus(_ name: String) throws(LifecycleError) -> ServiceStatus {
        let service = try service(named: name)
        return status(service, leases: leases.withLock { $0.count(of: name) })
    }

    /// Live leases per service.
    func leaseCounts() -> [String: Int] { leases.withLock { $0.countsByService } }

    func status(_ service: ManagedService, leases: Int) -> ServiceStatus {
        let snapshot = service.state.withLock { $0 }
        return ServiceStatus(
            name: service.name, state: snapshot.state, pid: snapshot.process?.pid, count: try? service.kernelCount(),
            leases: leases, key: service.semaphores.key, semid: service.semaphores.id, lastHealth: snapshot.lastHealth,
            failureReason: snapshot.state == .failed ? snapshot.failureReason : nil, lingerUntil: snapshot.lingerUntil,
            source: snapshot.fromConfig ? "config" : "api", definition: snapshot.definition, stateSince: snapshot.stateSince,
            restarts: snapshot.restartsInWindow)
    }

    func service(named name: String) throws(LifecycleError) -> ManagedService {
        guard ServiceName.isValid(name) else { throw .invalidName(name) }
        guard let service = services.withLock({ $0[name] }) else { throw .unknownService(name) }
        return service
    }

    /// The service's semaphore set: the recorded one while it is still the set this state
    /// dir made (key, id, owner, mode), else a new one. A key where some other set already
    /// lives is never used: the next attempt's key is tried instead.
    func openSemaphores(for name: String, recorded: ServiceRecord? = nil) throws(LifecycleError) -> SemaphoreSet {
        if let key = recorded?.semKey, let id = recorded?.semID,
            SemaphoreSet.isRecorded(key: key, id: id, mode: config.semaphoreMode)
        {
            return SemaphoreSet(key: key, id: id)
        }
        for attempt in 0..<Self.keyAttempts {
            let key = SemaphoreSet.key(scope: config.scope, service: name, attempt: attempt)
            do {
                if let set = try SemaphoreSet.create(key: key, mode: config.semaphoreMode) { return set }
            } catch {
                throw .kernel("semaphore set of \(name): \(error)")
            }
            context.logger.notice("semaphore key \(key) of \(name) is taken by a set this state dir did not make; trying another")
        }
        throw .kernel("semaphore set of \(name): \(Self.keyAttempts) keys tried, all taken")
    }

    static let keyAttempts = 64

    /// Where the service's output goes (`STATE/logs/NAME.log`; it may not exist yet).
    public func logPath(of name: String) throws(LifecycleError) -> String {
        let service = try service(named: name)
        return "\(context.logsDirectory)/\(service.name).log"
    }

    /// Admin restart of a running service; its leases stay granted.
    public func restartService(_ name: String, actor: String) async throws(LifecycleError) {
        let service = try service(named: name)
        await service.lock.lock()
        defer { service.lock.unlock() }
        try await service.lockKernel()
        defer { service.unlockKernel() }
        try await service.restart(actor: actor)
    }

    /// Takes a service out of `failed`; starts it again if leases still count.
    public func resetService(_ name: String, actor: String) async throws(LifecycleError) {
        let service = try service(named: name)
        await service.lock.lock()
        defer { service.lock.unlock() }
        try await service.lockKernel()
        defer { service.unlockKernel() }
        try await service.reset(actor: actor)
    }

    // MARK: Start-up

    func loadServices() throws {
        let decoder = JSONDecoder()
        for record in try context.store.read({ try $0.services() }) {
            guard let definition = try? decoder.decode(ServiceDefinition.self, from: Data(record.definition.utf8)) else {
                context.logger.error("stored definition of \(record.name) is unreadable; skipped")
                continue
            }
            let semaphores = try openSemaphores(for: record.name, recorded: record)
            if semaphores.key != record.semKey || semaphores.id != record.semID {
                var renewed = record
                (renewed.semKey, renewed.semID) = (semaphores.key, semaphores.id)
                try context.write { try $0.saveService(renewed) }
            }
            let service = ManagedService(name: record.name, definition: definition, semaphores: semaphores, context: context)
            service.state.withLock { $0.fromConfig = record.source == "config" }
            services.withLock { $0[record.name] = service }
        }
    }

    func validate(_ request: AcquireRequest) throws(LifecycleError) -> Int64? {
        if request.holder.utf8.count > 128 {
            throw .invalidField(DefinitionError(field: "holder", message: "at most 128 bytes"))
        }
        if let ttl = request.ttlMs, !CoordinatorConfig.ttlRange.contains(ttl) {
            throw .invalidField(DefinitionError(field: "ttl_ms", message: "must be within \(CoordinatorConfig.ttlRange)"))
        }
        if let pid = request.clientPID {
            guard pid > 0 else { throw .invalidField(DefinitionError(field: "client_pid", message: "must be > 0")) }
            guard ProcessIdentity.of(pid: pid)?.isAlive == true else { throw .clientNotRunning(pid) }
        }
        if request.ttlMs == nil && request.clientPID == nil { return config.defaultTTLMs }
        return request.ttlMs
    }

    /// `l_` + 16 hex digits that only grow (wall-clock µs, bumped past the last one) + 8
    /// random ones. Growing ids land at the right edge of the lease key and the events'
    /// lease index instead of on a random page of each: measured ~20 % off a commit here.
    static func newLeaseID() -> String {
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1_000_000))
        var last = lastLeaseStamp.load(ordering: .relaxed)
        var stamp: UInt64
        repeat {
            stamp = max(now, last + 1)
            let (exchanged, original) = lastLeaseStamp.compareExchange(expected: last, desired: stamp, ordering: .relaxed)
            if exchanged { break }
            last = original
        } while true
        var generator = SystemRandomNumberGenerator()
        let low = generator.next() as UInt32
        return "l_" + String(stamp, radix: 16).leftPadded(16) + String(low, radix: 16).leftPadded(8)
    }
}

/// The stamp of the newest lease id (see `Coordinator.newLeaseID`).
private let lastLeaseStamp = Atomic<UInt64>(0)

extension LeaseInfo {
    func with(expiresAt: String) -> LeaseInfo {
        LeaseInfo(id: id, service: service, holder: holder, holderPID: holderPID, clientPID: clientPID,
                  ttlMs: ttlMs, acquiredAt: acquiredAt, expiresAt: expiresAt)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
