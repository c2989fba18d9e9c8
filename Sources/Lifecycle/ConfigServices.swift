import AuditStore
import Foundation
import Posix

/// What applying the config file's services changed.
public struct ConfigServicesChange: Sendable, Equatable {
    public var added: [String] = []
    public var changed: [String] = []
    public var removed: [String] = []
    /// Removed from the file but still leased: dropped once unleased.
    public var pendingRemoval: [String] = []
    public init() {}
}

extension Coordinator {
    /// Makes the config file's `[services.NAME]` tables the set of config services: new ones
    /// appear, changed ones apply at their next start, removed ones stop once unleased. The
    /// whole set is validated first; nothing changes when one definition is bad.
    public func applyConfigServices(_ definitions: [String: ServiceDefinition], actor: String) async throws(LifecycleError)
        -> ConfigServicesChange
    {
        for (name, definition) in definitions.sorted(by: { $0.key < $1.key }) {
            guard ServiceName.isValid(name) else { throw .invalidName(name) }
            do { try definition.validate() } catch {
                throw .invalidField(DefinitionError(field: "services.\(name).\(error.field)", message: error.message))
            }
        }
        await registryLock.lock()
        defer { registryLock.unlock() }
        var change = ConfigServicesChange()
        for (name, definition) in definitions.sorted(by: { $0.key < $1.key }) {
            if let existing = services.withLock({ $0[name] }) {
                await existing.lock.lock()
                defer { existing.lock.unlock() }
                let wasConfig = existing.state.withLock { $0.fromConfig }
                if existing.definition != definition || !wasConfig {
                    try replace(existing, with: definition, fromConfig: true, actor: actor)
                    change.changed.append(name)
                } else {
                    existing.state.withLock { $0.pendingRemoval = false }
                }
            } else {
                try add(name, definition, fromConfig: true, actor: actor)
                change.added.append(name)
            }
        }
        let dropped = services.withLock { table in
            table.values.filter { $0.state.withLock { $0.fromConfig } && definitions[$0.name] == nil }
        }
        for service in dropped.sorted(by: { $0.name < $1.name }) {
            await service.lock.lock()
            defer { service.lock.unlock() }
            service.state.withLock { $0.pendingRemoval = true }
            if await removeIfPending(service, actor: actor) {
                change.removed.append(service.name)
            } else {
                change.pendingRemoval.append(service.name)
            }
        }
        return change
    }

    /// Drops a service marked for removal once nothing counts it: stops it, removes its
    /// semaphore set and its row. Call with the service's lock held. Returns whether removed.
    @discardableResult
    func removeIfPending(_ service: ManagedService, actor: String = EventActor.procrefd) async -> Bool {
        guard service.state.withLock({ $0.pendingRemoval }), (try? service.kernelCount()) == 0 else { return false }
        do { try await remove(service, actor: actor) } catch { context.logger.error("removing \(service.name): \(error)") }
        return true
    }

    /// Removes an API-defined service (`DELETE /v1/services/{name}`): refused while it is
    /// leased or running, or defined in the config file.
    public func removeService(_ name: String, actor: String) async throws(LifecycleError) {
        let service = try service(named: name)
        await registryLock.lock()
        defer { registryLock.unlock() }
        await service.lock.lock()
        defer { service.lock.unlock() }
        if service.state.withLock({ $0.fromConfig }) { throw .definedInConfig(name) }
        guard !service.isRunning, (try? service.kernelCount()) ?? 1 == 0, leases.withLock({ $0.count(of: name) }) == 0 else {
            throw .serviceLeased(name)
        }
        try await remove(service, actor: actor)
    }

    /// Stops what is left of the service, deletes its row (recording `service.removed`),
    /// removes its semaphore set and cgroup, and drops it. Call with its lock held.
    private func remove(_ service: ManagedService, actor: String) async throws(LifecycleError) {
        await service.stop(actor: actor, reason: "removed")
        service.processes.removeCgroup()
        try context.write { tx in
            try tx.deleteService(name: service.name)
            try tx.append(NewEvent(.serviceRemoved, service: service.name, actor: actor))
        }
        do { try service.semaphores.remove() } catch { throw .kernel("semaphore set of \(service.name): \(error)") }
        services.withLock { table in
            if table[service.name] === service { table.removeValue(forKey: service.name) }
        }
    }
}
