import AuditStore
import Logging
import Wire
import FoundationEssentials
import Posix
import Synchronization
import LifecycleModel

/// The defined services: their executors by name, their stored definitions and their
/// semaphore sets. Changes to the set (define, replace, remove, config reload) run one at a
/// time under `lock`; lookups never wait for it.
final class ServiceRegistry: Sendable {
    var config: CoordinatorConfig { context.settings.current }
    let context: LifecycleContext
    let issuer: LeaseIssuer
    private let table = Mutex(ServiceTable())
    /// Serialises changes to the set of services.
    let lock = AsyncLock()

    init(context: LifecycleContext, issuer: LeaseIssuer) {
        self.context = context
        self.issuer = issuer
    }

    func service(named name: String) throws(LifecycleError) -> ServiceExecutor {
        guard ServiceName.isValid(name) else { throw .invalidName(name) }
        guard let service = table.withLock({ $0[name] }) else { throw .unknownService(name) }
        return service
    }

    /// The service, if defined (no name check).
    func existing(_ name: String) -> ServiceExecutor? { table.withLock { $0[name] } }

    /// Every service, sorted by name.
    var all: [ServiceExecutor] { table.withLock { $0.sortedByName() } }

    var count: Int { table.withLock { $0.count } }

    // MARK: Changes (call with `lock` held)

    /// Creates a service and its semaphore set.
    func add(_ name: String, _ definition: ServiceDefinition, fromConfig: Bool, actor: Principal) async throws(LifecycleError) {
        let encoded = try Self.encode(definition)
        let semaphores = try openSemaphores(for: name)
        let source = fromConfig ? "config" : "api"
        let door: ServiceFront?
        do { door = try frontDoor(name, definition, semid: semaphores.id) } catch {
            try? semaphores.remove()
            throw error
        }
        do {
            try await context.write { tx in
                try tx.saveService(ServiceRecord(name: name, definition: encoded, semKey: semaphores.key, semID: semaphores.id, source: source))
                try tx.append(NewEvent(.serviceDefined, service: name, actor: actor, detail: [
                    "replaced": false, "source": .string(source),
                    "key": .int(Int64(semaphores.key)), "semid": .int(Int64(semaphores.id)),
                ]))
            }
        } catch {
            try? semaphores.remove()  // never recorded: nobody else can know it
            door?.close(stopConnections: true)
            throw error
        }
        let service = ServiceExecutor(name: name, definition: definition, semaphores: semaphores, context: context, issuer: issuer, fromConfig: fromConfig)
        table.withLock { $0[name] = service }
        open(door, for: service)
    }

    /// Stores a new definition of an existing service; it applies at the next start.
    func replace(_ service: ServiceExecutor, with definition: ServiceDefinition, fromConfig: Bool, actor: Principal) async throws(LifecycleError) {
        let encoded = try Self.encode(definition)
        let (name, key, id, source) = (service.name, service.semaphores.key, service.semaphores.id, fromConfig ? "config" : "api")
        let previous = service.front.withLock { $0 }
        let frontChanged = FrontDoor.Settings(definition) != FrontDoor.Settings(service.definition)
        let door = frontChanged ? try frontDoor(name, definition, semid: id, reusing: previous) : previous
        do {
            try await context.write { tx in
                try tx.saveService(ServiceRecord(name: name, definition: encoded, semKey: key, semID: id, source: source))
                try tx.append(NewEvent(.serviceDefined, service: name, actor: actor, detail: ["replaced": true, "source": .string(source)]))
            }
        } catch {
            if frontChanged { door?.close(stopConnections: true, unlink: false) }
            throw error
        }
        service.redefine(definition)
        service.membership.withLock { $0 = (fromConfig, false) }
        guard frontChanged else { return }
        // The old door finishes its open connections and accepts nothing new; the new one
        // takes the listening sockets both share.
        previous?.close(stopConnections: false)
        open(door, for: service)
    }

    /// The front door `definition` asks for, its addresses bound (so a failure changes
    /// nothing), sharing the listening sockets of `previous` where the addresses are the same.
    private func frontDoor(_ name: String, _ definition: ServiceDefinition, semid: Int32, reusing previous: ServiceFront? = nil) throws(LifecycleError) -> ServiceFront? {
        guard definition.hasFront else { return nil }
        if definition.activatesSockets { return try SocketActivation(service: name, definition: definition, context: context, reusing: previous) }
        guard let executable = context.settings.current.doorExecutable else {
            throw .invalidField(DefinitionError(field: "front", message: "this procrefd was started without procref-door"))
        }
        return try FrontDoor(service: name, definition: definition, semid: semid, context: context, executable: executable, reusing: previous)
    }

    private func open(_ door: ServiceFront?, for service: ServiceExecutor) {
        service.front.withLock { $0 = door }
        door?.open(for: service)
    }

    /// A stored service's front, at start-up. An address still held (by a door of the
    /// procrefd before this one finishing its connections, or by a socket-activated service
    /// that still runs) is tried again every second; the first failure is logged.
    private func openStoredFront(of service: ServiceExecutor, attempt: Int = 0) {
        guard service.front.withLock({ $0 }) == nil, existing(service.name) === service else { return }
        do { open(try frontDoor(service.name, service.definition, semid: service.semaphores.id), for: service) } catch {
            if attempt == 0 { context.logger.error("front of \(service.name): \(error); trying again each second") }
            _ = context.loop.schedule(afterMs: 1_000) { [weak self, weak service] in
                guard let self, let service else { return }
                openStoredFront(of: service, attempt: attempt + 1)
            }
        }
    }

    /// Stops what is left of the service, deletes its row (recording `service.removed`),
    /// removes its semaphore set and cgroup, and drops it.
    func remove(_ service: ServiceExecutor, actor: Principal) async throws(LifecycleError) {
        service.front.withLock { $0 }?.close(stopConnections: true)
        _ = await service.ask { .stopRequested(reason: "removed", by: actor, $0) }
        service.processes.removeCgroup()
        service.caps.removeV1Groups()
        let name = service.name
        try await context.write { tx in
            try tx.deleteService(name: name)
            try tx.append(NewEvent(.serviceRemoved, service: name, actor: actor))
        }
        do { try service.semaphores.remove() } catch { throw .kernel("semaphore set of \(name): \(error)") }
        table.withLock { table in
            if table[name] === service { table.removeValue(forKey: name) }
        }
    }

    /// Drops a service marked for removal once nothing counts it (takes `lock`).
    func removeIfPending(_ service: ServiceExecutor) async {
        await lock.lock()
        defer { lock.unlock() }
        _ = await removeIfPendingLocked(service, actor: Principal.procrefd)
    }

    /// Drops a service marked for removal once nothing counts it. Returns whether removed.
    func removeIfPendingLocked(_ service: ServiceExecutor, actor: Principal) async -> Bool {
        guard service.membership.withLock({ $0.pendingRemoval }), service.kernelCount().isZero, existing(service.name) === service
        else { return false }
        do { try await remove(service, actor: actor) } catch { context.logger.error("removing \(service.name): \(error)") }
        return true
    }

    /// A new set for a service whose set was removed from outside, saved as the service's
    /// (call with `lock` held; the caller puts it in place once the old leases are ended).
    func renewSemaphores(of service: ServiceExecutor) async throws(LifecycleError) -> SemaphoreSet {
        let renewed = try openSemaphores(for: service.name)
        let (name, definition, source) = (service.name, service.definition, service.membership.withLock { $0.fromConfig } ? "config" : "api")
        let encoded = try Self.encode(definition)
        do {
            try await context.write { try $0.saveService(ServiceRecord(name: name, definition: encoded, semKey: renewed.key, semID: renewed.id, source: source)) }
        } catch {
            try? renewed.remove()  // never recorded: nobody else can know it
            throw error
        }
        return renewed
    }

    static func encode(_ definition: ServiceDefinition) throws(LifecycleError) -> String {
        do { return String(decoding: try JSONEncoder().encode(definition), as: UTF8.self) } catch {
            throw .storage("cannot encode definition: \(error)")
        }
    }

    // MARK: Start-up

    /// Loads the stored definitions, before anything is served.
    func load() throws {
        let decoder = JSONDecoder()
        for record in try context.store.read({ try $0.services() }) {
            guard let definition = try? decoder.decode(ServiceDefinition.self, from: Data(record.definition.utf8)) else {
                context.logger.error("stored definition of \(record.name) is unreadable; skipped")
                continue
            }
            // One service whose set cannot be had (keys squatted, no set left) must not keep
            // the others from being served: it is skipped, named in the log, and tried again
            // at the next start.
            let semaphores: SemaphoreSet
            do { semaphores = try openSemaphores(for: record.name, recorded: record) } catch {
                context.logger.error("service \(record.name) skipped: \(error)")
                continue
            }
            if semaphores.key != record.semKey || semaphores.id != record.semID {
                var renewed = record
                (renewed.semKey, renewed.semID) = (semaphores.key, semaphores.id)
                // Synchronous: this runs once, at start-up, before the I/O loop has work.
                try context.store.write { try $0.saveService(renewed) }
            }
            let service = ServiceExecutor(
                name: record.name, definition: definition, semaphores: semaphores, context: context, issuer: issuer,
                fromConfig: record.source == "config")
            if let rule = service.confinementViolation() {
                context.logger.warning("stored service \(record.name) breaks [security] and will not start: \(rule)")
            }
            table.withLock { $0[record.name] = service }
            openStoredFront(of: service)
        }
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
}
