import AuditStore
import Foundation
import Logging
import Posix
import Synchronization

/// Settings of the lifecycle core.
public struct CoordinatorConfig: Sendable {
    public var holderExecutable: String
    public var logsDirectory: String
    public var semaphoreMode: UInt32 = 0o600
    public var maxLeases = 4096
    /// Per service; below the kernel's 32767 undo bound.
    public var maxLeasesPerService = 1024
    public var defaultTTLMs: Int64 = 30_000
    /// Idle pre-spawned holders kept ready (0: spawn one per acquire).
    public var holderPoolSize = 8
    /// How long an acquire may wait for a service busy starting, stopping or recovering.
    public var acquireTimeoutMs = 60_000
    /// How long an Idempotency-Key is remembered.
    public var idempotencyWindowMs = 86_400_000
    /// Services that may be defined (API and config together).
    public var maxServices = 1000
    /// When set, services defined over the API may only run these programs (absolute paths,
    /// after PATH lookup), for `start` and for exec health checks.
    public var apiPrograms: [String]?
    public static let ttlRange: ClosedRange<Int64> = 100...86_400_000

    public init(holderExecutable: String, logsDirectory: String) {
        self.holderExecutable = holderExecutable
        self.logsDirectory = logsDirectory
    }
}

/// An acquire request: at least one of `ttlMs` / `clientPID`; neither → the default TTL.
public struct AcquireRequest: Sendable, Decodable, Equatable {
    public var holder: String
    public var ttlMs: Int64?
    public var clientPID: Int32?

    public init(holder: String = "", ttlMs: Int64? = nil, clientPID: Int32? = nil) {
        self.holder = holder
        self.ttlMs = ttlMs
        self.clientPID = clientPID
    }

    enum CodingKeys: String, CodingKey {
        case holder
        case ttlMs = "ttl_ms"
        case clientPID = "client_pid"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: ["holder", "ttl_ms", "client_pid"], at: nil)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        holder = try c.decodeIfPresent(String.self, forKey: .holder) ?? ""
        ttlMs = try c.decodeIfPresent(Int64.self, forKey: .ttlMs)
        clientPID = try c.decodeIfPresent(Int32.self, forKey: .clientPID)
    }
}

/// The answer to a granted acquire.
public struct LeaseGrant: Sendable, Equatable {
    public let lease: LeaseInfo
    /// Kernel count right after the acquire.
    public let count: Int
    /// Whether this acquire started the service (count 0 → 1).
    public let started: Bool
    /// The same Idempotency-Key and request were seen before: this is that grant again.
    public var replayed = false
}

/// An acquire's Idempotency-Key and a digest of what was asked with it.
public struct IdempotencyKey: Sendable, Equatable {
    public let key: String
    public let requestHash: String

    public init(key: String, requestHash: String) {
        self.key = key
        self.requestHash = requestHash
    }

    /// Keys are 1–255 visible ASCII characters.
    public static func isValid(_ key: String) -> Bool {
        (1...255).contains(key.utf8.count) && key.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7e }
    }
}

/// The answer to a release.
public struct ReleaseResult: Sendable, Equatable {
    public let lease: String
    public let count: Int
    public let stoppedService: Bool
}

/// A service's public description.
public struct ServiceStatus: Sendable, Equatable {
    public let name: String
    public let state: ServiceState
    public let pid: Int32?
    public let count: Int?
    public let leases: Int
    public let key: Int32
    public let semid: Int32
    public let lastHealth: String?
    public let failureReason: String?
    public let lingerUntil: Date?
    public let source: String
    public let definition: ServiceDefinition
}

/// procrefd's lifecycle core: services, their kernel counts, and the leases held on them.
public final class Coordinator: Sendable {
    let config: CoordinatorConfig
    let context: LifecycleContext
    private let holders: HolderPool
    let services = Mutex<[String: ManagedService]>([:])
    /// Serialises changes to the set of services (definitions, config reloads, removals).
    let registryLock = AsyncLock()
    let leases = Mutex<[String: Lease]>([:])
    /// Acquires past the limit check whose lease is not in the table yet.
    private let acquiresInFlight = Atomic<Int>(0)
    /// Per service: when the last `lease.refused` was recorded, and refusals since.
    private let refusals = Mutex<[String: (lastRecorded: Int64?, suppressed: Int)]>([:])
    /// Idempotency keys whose acquire is under way.
    private let inFlightKeys = Mutex<Set<String>>([])
    private let shuttingDown = Atomic<Bool>(false)

    /// Loads the stored service definitions. Call `reconcile` before serving.
    public init(config: CoordinatorConfig, store: AuditStore, logger: Logger) throws {
        self.config = config
        let spawner = Spawner()
        context = LifecycleContext(
            store: store, watcher: try ExitWatcher(), spawner: spawner,
            logsDirectory: config.logsDirectory, logger: logger)
        holders = HolderPool(executable: config.holderExecutable, spawner: spawner, size: config.holderPoolSize)
        try loadServices()
    }

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
    private func checkAllowedPrograms(_ definition: ServiceDefinition) throws(LifecycleError) {
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
        try context.write { tx in
            try tx.saveService(ServiceRecord(
                name: name, definition: encoded, semKey: semaphores.key, semID: semaphores.id, source: fromConfig ? "config" : "api"))
            try tx.append(NewEvent(.serviceDefined, service: name, actor: actor, detail: [
                "replaced": false, "source": .string(fromConfig ? "config" : "api"),
                "key": .int(Int64(semaphores.key)), "semid": .int(Int64(semaphores.id)),
            ]))
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
        return services.withLock { Array($0.values) }.sorted { $0.name < $1.name }.map { status($0, leases: counts[$0.name] ?? 0) }
    }

    public func serviceStatus(_ name: String) throws(LifecycleError) -> ServiceStatus {
        let service = try service(named: name)
        return status(service, leases: leaseCounts()[name] ?? 0)
    }

    /// Live leases per service, in one pass over the table.
    private func leaseCounts() -> [String: Int] {
        leases.withLock { table in
            var counts: [String: Int] = [:]
            for lease in table.values { counts[lease.service, default: 0] += 1 }
            return counts
        }
    }

    private func status(_ service: ManagedService, leases: Int) -> ServiceStatus {
        let snapshot = service.state.withLock { $0 }
        return ServiceStatus(
            name: service.name, state: snapshot.state, pid: snapshot.process?.pid, count: try? service.kernelCount(),
            leases: leases, key: service.semaphores.key, semid: service.semaphores.id, lastHealth: snapshot.lastHealth,
            failureReason: snapshot.state == .failed ? snapshot.failureReason : nil, lingerUntil: snapshot.lingerUntil,
            source: snapshot.fromConfig ? "config" : "api", definition: snapshot.definition)
    }

    func service(named name: String) throws(LifecycleError) -> ManagedService {
        guard ServiceName.isValid(name) else { throw .invalidName(name) }
        guard let service = services.withLock({ $0[name] }) else { throw .unknownService(name) }
        return service
    }

    private func openSemaphores(for name: String) throws(LifecycleError) -> SemaphoreSet {
        do {
            return try SemaphoreSet.openOrCreate(key: SemaphoreSet.key(forService: name), mode: config.semaphoreMode)
        } catch {
            throw .kernel("semaphore set of \(name): \(error)")
        }
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

    // MARK: Leases

    /// Throws `tooManyLeases` when the table (plus `pending` acquires of other services) is at
    /// a limit. Refusals are audited, at most one `lease.refused` per service per second (the
    /// next one says how many were folded into it), so a flood cannot flood the log.
    private func checkLimits(service name: String, pending: Int, actor: String) throws(LifecycleError) {
        let (total, onService) = leases.withLock { table in
            (table.count, table.values.filter { $0.service == name }.count)
        }
        let overTotal = total + pending >= config.maxLeases
        guard overTotal || onService >= config.maxLeasesPerService else { return }
        let limit = overTotal ? config.maxLeases : config.maxLeasesPerService
        let now = monotonicMilliseconds()
        let folded = refusals.withLock { refusals -> Int? in
            var entry = refusals[name] ?? (lastRecorded: nil, suppressed: 0)
            defer { refusals[name] = entry }
            if let last = entry.lastRecorded, now - last < 1_000 {
                entry.suppressed += 1
                return nil
            }
            let suppressed = entry.suppressed
            entry = (now, 0)
            return suppressed
        }
        if let folded {
            context.recordLogged(NewEvent(.leaseRefused, service: name, actor: actor, detail: [
                "reason": .string(overTotal ? "max_leases" : "max_leases_per_service"), "limit": .int(Int64(limit)),
                "suppressed_since_last": .int(Int64(folded)),
            ]))
        }
        throw .tooManyLeases(limit: limit)
    }

    /// Grants a lease: spawns a holder (kernel count +1), starts the service on 0 → 1 and
    /// waits until it is ready, then records `lease.acquired` before returning.
    public func acquire(
        service name: String, request: AcquireRequest, actor: String, idempotency: IdempotencyKey? = nil
    ) async throws(LifecycleError) -> LeaseGrant {
        guard let idempotency else { return try await measuredAcquire(service: name, request: request, actor: actor, idempotency: nil) }
        // One request per key at a time: a concurrent retry waits for the first to finish.
        while !inFlightKeys.withLock({ $0.insert(idempotency.key).inserted }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
        defer { inFlightKeys.withLock { _ = $0.remove(idempotency.key) } }

        let notBefore = Date().addingTimeInterval(-Double(config.idempotencyWindowMs) / 1000)
        let previous: IdempotencyRecord?
        do { previous = try context.store.read { try $0.idempotencyKey(idempotency.key, notBefore: notBefore) } } catch {
            throw .storage("\(error)")
        }
        if let previous {
            guard previous.requestHash == idempotency.requestHash, previous.service == name else {
                throw .idempotencyMismatch(idempotency.key)
            }
            let record: LeaseRecord?
            do { record = try context.store.read { try $0.lease(id: previous.lease) } } catch { throw .storage("\(error)") }
            guard let record else { throw .storage("lease \(previous.lease) of key \(idempotency.key) is missing") }
            var grant = LeaseGrant(
                lease: LeaseInfo(
                    id: record.id, service: record.service, holder: record.holder, holderPID: record.holderPID,
                    clientPID: record.clientPID, ttlMs: record.ttlMs, acquiredAt: record.acquiredAt, expiresAt: record.expiresAt),
                count: previous.count, started: previous.started)
            grant.replayed = true
            return grant
        }
        return try await measuredAcquire(service: name, request: request, actor: actor, idempotency: idempotency)
    }

    private func measuredAcquire(
        service name: String, request: AcquireRequest, actor: String, idempotency: IdempotencyKey?
    ) async throws(LifecycleError) -> LeaseGrant {
        let begun = monotonicMilliseconds()
        do {
            let grant = try await grant(service: name, request: request, actor: actor, idempotency: idempotency)
            Telemetry.acquired(service: name, started: grant.started, seconds: Double(monotonicMilliseconds() - begun) / 1000)
            return grant
        } catch {
            if let reason = error.refusalReason { Telemetry.refused(service: name, reason: reason) }
            throw error
        }
    }

    private func grant(
        service name: String, request: AcquireRequest, actor: String, idempotency: IdempotencyKey?
    ) async throws(LifecycleError) -> LeaseGrant {
        guard !shuttingDown.load(ordering: .relaxed) else { throw .shuttingDown }
        let service = try service(named: name)
        let ttlMs = try validate(request)
        // Refuse at once when already full, without queueing behind the service lock.
        try checkLimits(service: name, pending: 0, actor: actor)
        guard await service.lock.lock(timeoutMs: config.acquireTimeoutMs) else {
            throw .timedOut("service \(name) busy for \(config.acquireTimeoutMs) ms")
        }
        defer { service.lock.unlock() }
        // The exact check: this service's acquires are serialised by its lock; acquires on
        // other services in flight hold a slot of the total until their lease is in the table.
        let pending = acquiresInFlight.add(1, ordering: .relaxed).newValue
        defer { acquiresInFlight.subtract(1, ordering: .relaxed) }
        try checkLimits(service: name, pending: pending - 1, actor: actor)
        if let reason = service.failureReason { throw .serviceFailed(service: name, reason: reason) }
        try await service.lockKernel()
        defer { service.unlockKernel() }

        let holder: PidFD
        do {
            holder = try holders.launch(semaphoreID: service.semaphores.id, ttlMs: ttlMs, clientPID: request.clientPID)
        } catch {
            switch error {
            case .clientGone: throw .clientNotRunning(request.clientPID ?? 0)
            case .other(let message): throw .holder(message)
            }
        }
        let now = Date()
        let info = LeaseInfo(
            id: Self.newLeaseID(), service: name, holder: request.holder, holderPID: holder.pid,
            clientPID: request.clientPID, ttlMs: ttlMs, acquiredAt: Timestamp.format(now),
            expiresAt: ttlMs.map { Timestamp.format(now.addingTimeInterval(Double($0) / 1000)) })
        let lease = Lease(info: info, holder: holder)
        try watch(lease)

        let count: Int
        var started = false
        do {
            count = try service.kernelCount()
            if !service.isRunning {
                try await service.start(actor: actor, count: count)
                started = true
            } else {
                // Every acquire but the one that starts the service checks its health.
                service.cancelLinger()
                if let failure = await service.checkHealth() {
                    try await service.recover(actor: actor, failure: failure, count: count)
                }
            }
            try context.write { tx in
                try tx.insertLease(LeaseRecord(
                    id: info.id, service: name, holder: info.holder, holderPID: holder.pid,
                    holderStartTime: holder.identity.startTime, clientPID: info.clientPID, ttlMs: ttlMs,
                    acquiredAt: info.acquiredAt, expiresAt: info.expiresAt))
                var detail: [String: DetailValue] = ["count": .int(Int64(count)), "started": .bool(started)]
                if let ttlMs { detail["ttl_ms"] = .int(ttlMs) }
                if let client = info.clientPID { detail["client_pid"] = .int(Int64(client)) }
                if !info.holder.isEmpty { detail["holder"] = .string(info.holder) }
                try tx.append(NewEvent(.leaseAcquired, service: name, lease: info.id, pid: holder.pid, actor: actor, detail: detail))
                if let idempotency {
                    try tx.expireIdempotencyKeys(before: now.addingTimeInterval(-Double(config.idempotencyWindowMs) / 1000))
                    try tx.saveIdempotencyKey(IdempotencyRecord(
                        key: idempotency.key, service: name, requestHash: idempotency.requestHash, lease: info.id,
                        count: count, started: started))
                }
            }
        } catch {
            // Undo: the holder's exit gives the count back; a service nobody counts is stopped.
            await end(lease, signal: SIGTERM)
            if (try? service.kernelCount()) == 0 {
                await service.lastReferenceGone(actor: actor, reason: "acquire_failed")
            }
            throw error
        }
        leases.withLock { $0[info.id] = lease }
        lease.setPhase(.active)
        // An exit that happened before the lease became active was not handled: handle it now.
        if lease.exitedAlready { handleUnexpectedExit(lease) }
        return LeaseGrant(lease: info, count: count, started: started)
    }

    /// Releases a lease: its holder exits (count −1); on 1 → 0 the service is stopped.
    public func release(id: String, actor: String) async throws(LifecycleError) -> ReleaseResult {
        guard let lease = leases.withLock({ $0[id] }), lease.beginManaging() else { throw .unknownLease(id) }
        let service = try service(named: lease.service)
        await service.lock.lock()
        defer { service.lock.unlock() }
        try await service.lockKernel()
        defer { service.unlockKernel() }

        let status = await end(lease, signal: SIGTERM)
        var reason = LeaseEnd.from(holderExit: status)
        if status == .signaled(signal: SIGKILL) { reason = .released }
        let count = try service.kernelCount()
        try context.write { tx in
            try tx.endLease(id: id, reason: reason.rawValue)
            try tx.append(NewEvent(reason.eventKind, service: service.name, lease: id, pid: lease.holder.pid, actor: actor,
                                   detail: ["count": .int(Int64(count)), "holder_exit": .string(status?.description ?? "unknown")]))
        }
        leases.withLock { _ = $0.removeValue(forKey: id) }
        Telemetry.ended(service: service.name, reason: reason)
        if count == 0 {
            await service.lastReferenceGone(actor: actor, reason: "last_release")
            await removeIfPending(service)
        }
        return ReleaseResult(lease: id, count: count, stoppedService: count == 0 && !service.isRunning)
    }

    /// Pushes a TTL lease's deadline to now + TTL (the holder keeps its own deadline).
    public func keepalive(id: String, actor: String) throws(LifecycleError) -> LeaseInfo {
        guard let lease = leases.withLock({ $0[id] }), lease.phase == .active else { throw .unknownLease(id) }
        guard let ttlMs = lease.info.ttlMs else { throw .leaseNotRenewable(id) }
        do { try lease.holder.signal(SIGUSR1) } catch { throw .unknownLease(id) }
        let expiresAt = Timestamp.format(Date().addingTimeInterval(Double(ttlMs) / 1000))
        lease.update { $0 = $0.with(expiresAt: expiresAt) }
        try context.write { tx in
            try tx.updateLeaseExpiry(id: id, expiresAt: expiresAt)
            try tx.append(NewEvent(.leaseKeepalive, service: lease.service, lease: id, pid: lease.holder.pid,
                                   actor: actor, detail: ["expires_at": .string(expiresAt)]))
        }
        return lease.info
    }

    public func leaseInfos(service: String? = nil) -> [LeaseInfo] {
        leases.withLock { Array($0.values) }.map(\.info)
            .filter { service == nil || $0.service == service }
            .sorted { ($0.acquiredAt, $0.id) < ($1.acquiredAt, $1.id) }
    }

    public func leaseInfo(id: String) throws(LifecycleError) -> LeaseInfo {
        guard let lease = leases.withLock({ $0[id] }) else { throw .unknownLease(id) }
        return lease.info
    }

    // MARK: Shutdown

    /// Hand-off: refuse new acquires and leave holders and services running for the next
    /// procrefd to re-adopt (their rows stay live in SQLite).
    public func handOff() {
        shuttingDown.store(true, ordering: .relaxed)
        holders.shutdown()
    }

    /// Drains: revokes every lease, stops every service, removes the semaphore sets.
    public func drain(actor: String) async {
        shuttingDown.store(true, ordering: .relaxed)
        holders.shutdown()
        for service in services.withLock({ Array($0.values) }) {
            await service.lock.lock()
            let owned = leases.withLock { table in table.values.filter { $0.service == service.name } }
            for lease in owned where lease.beginManaging() {
                let status = await end(lease, signal: SIGTERM)
                let count = (try? service.kernelCount()) ?? -1
                do {
                    try context.write { tx in
                        try tx.endLease(id: lease.id, reason: LeaseEnd.revoked.rawValue)
                        try tx.append(NewEvent(.leaseRevoked, service: service.name, lease: lease.id, pid: lease.holder.pid,
                                               actor: actor, detail: ["count": .int(Int64(count)), "reason": "shutdown",
                                                                      "holder_exit": .string(status?.description ?? "unknown")]))
                    }
                } catch {
                    context.logger.error("cannot record revocation of \(lease.id): \(error)")
                }
                leases.withLock { _ = $0.removeValue(forKey: lease.id) }
                Telemetry.ended(service: service.name, reason: .revoked)
            }
            await service.stop(actor: actor, reason: "shutdown")
            do { try service.semaphores.remove() } catch {
                context.logger.error("cannot remove semaphore set of \(service.name): \(error)")
            }
            service.lock.unlock()
        }
    }

    // MARK: Holder exits

    func watch(_ lease: Lease) throws(LifecycleError) {
        do {
            try context.watcher.watch(lease.holder) { [weak self] status in
                if lease.holderExited(status) { self?.handleUnexpectedExit(lease) }
            }
        } catch {
            try? lease.holder.signal(SIGKILL)
            throw .kernel("cannot watch holder: \(error)")
        }
    }

    /// Signals the holder and waits for it to exit (the watcher reaps it).
    @discardableResult
    private func end(_ lease: Lease, signal: Int32) async -> ExitStatus? {
        try? lease.holder.signal(signal)
        return await lease.waitForHolderExit(timeoutMs: 5_000)
    }

    /// A holder ended on its own (TTL, client exit, crash): record it, and stop the service
    /// if the kernel count is now 0.
    private func handleUnexpectedExit(_ lease: Lease) {
        Task { [self] in
            guard let service = services.withLock({ $0[lease.service] }) else { return }
            await service.lock.lock()
            defer { service.lock.unlock() }
            guard lease.beginManaging() else { return }  // a release got there first
            lease.setPhase(.ended)
            let status = lease.recordedExit
            let reason = status == nil ? lease.inferredEnd() : LeaseEnd.from(holderExit: status)
            do {
                try await service.lockKernel()
                defer { service.unlockKernel() }
                let count = try service.kernelCount()
                try context.write { tx in
                    try tx.endLease(id: lease.id, reason: reason.rawValue)
                    try tx.append(NewEvent(reason.eventKind, service: service.name, lease: lease.id, pid: lease.holder.pid,
                                           detail: ["count": .int(Int64(count)), "holder_exit": .string(status?.description ?? "unknown")]))
                }
                leases.withLock { _ = $0.removeValue(forKey: lease.id) }
                Telemetry.ended(service: service.name, reason: reason)
                if count == 0 {
                    await service.lastReferenceGone(actor: Actor.procrefd, reason: "last_\(reason.rawValue)")
                    await removeIfPending(service)
                }
            } catch {
                context.logger.error("handling exit of holder \(lease.holder.pid): \(error)")
            }
        }
    }

    // MARK: Start-up

    private func loadServices() throws {
        let decoder = JSONDecoder()
        for record in try context.store.read({ try $0.services() }) {
            guard let definition = try? decoder.decode(ServiceDefinition.self, from: Data(record.definition.utf8)) else {
                context.logger.error("stored definition of \(record.name) is unreadable; skipped")
                continue
            }
            let semaphores = try openSemaphores(for: record.name)
            let service = ManagedService(name: record.name, definition: definition, semaphores: semaphores, context: context)
            service.state.withLock { $0.fromConfig = record.source == "config" }
            services.withLock { $0[record.name] = service }
        }
    }

    private func validate(_ request: AcquireRequest) throws(LifecycleError) -> Int64? {
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

    static func newLeaseID() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt32
        return "l_" + String(high, radix: 16).leftPadded(16) + String(low, radix: 16).leftPadded(8)
    }
}

extension LeaseInfo {
    func with(expiresAt: String) -> LeaseInfo {
        LeaseInfo(id: id, service: service, holder: holder, holderPID: holderPID, clientPID: clientPID,
                  ttlMs: ttlMs, acquiredAt: acquiredAt, expiresAt: expiresAt)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
