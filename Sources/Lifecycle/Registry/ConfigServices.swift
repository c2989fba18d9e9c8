import AuditStore
import FoundationEssentials
import LifecycleModel
import Posix
import Synchronization
import Wire

/// What applying the config file's services changed.
public struct ConfigServicesChange: Sendable, Equatable {
    public var added: [String] = []
    public var changed: [String] = []
    public var removed: [String] = []
    /// Removed from the file but still leased: dropped once unleased.
    public var pendingRemoval: [String] = []
    public init() {}
}

extension ServiceRegistry {
    /// Makes the config file's `[services.NAME]` tables the set of config services: new ones
    /// appear, changed ones apply at their next start, removed ones stop once unleased. The
    /// `definitions` are checked already, as a whole (`ConfigTables.checked`, by the caller):
    /// nothing changes when one definition is bad.
    func applyConfig(_ definitions: [String: ServiceDefinition], actor: Principal) async throws(LifecycleError) -> ConfigServicesChange {
        let sorted = definitions.sorted { $0.key < $1.key }
        await lock.lock()
        defer { lock.unlock() }
        // The services there will be: those of the API, and the file's.
        var edges = dependencyEdges.filter { name, _ in existing(name).map { !$0.membership.withLock { $0.fromConfig } } ?? false }
        for (name, definition) in definitions { edges[name] = definition.requires ?? [] }
        try DependencyGraph(edges).check { definitions[$0] != nil ? "services.\($0).requires" : "requires" }
        var change = ConfigServicesChange()
        for (name, definition) in sorted {
            guard let existing = existing(name) else {
                try await add(name, definition, fromConfig: true, actor: actor)
                change.added.append(name)
                continue
            }
            if existing.definition != definition || !existing.membership.withLock({ $0.fromConfig }) {
                try await replace(existing, with: definition, fromConfig: true, actor: actor)
                change.changed.append(name)
            } else {
                existing.membership.withLock { $0.pendingRemoval = false }
            }
        }
        let dropped = all.filter { $0.membership.withLock { $0.fromConfig } && definitions[$0.name] == nil }
        for service in dropped {
            service.membership.withLock { $0.pendingRemoval = true }
            if await removeIfPendingLocked(service, actor: actor) {
                change.removed.append(service.name)
            } else {
                change.pendingRemoval.append(service.name)
            }
        }
        return change
    }

    /// Defines or replaces a service over the API. Returns true when it is new. A running
    /// service (or one the kernel still counts) cannot be replaced.
    func define(_ name: String, _ definition: ServiceDefinition, actor: Principal) async throws(LifecycleError) -> Bool {
        await lock.lock()
        defer { lock.unlock() }
        var edges = dependencyEdges
        edges[name] = definition.requires ?? []
        try DependencyGraph(edges).check()
        if let existing = existing(name) {
            if existing.membership.withLock({ $0.fromConfig }) { throw .definedInConfig(name) }
            guard existing.mainProcess == nil, existing.kernelCount().isZero else {
                throw .serviceRunning(name)
            }
            try await replace(existing, with: definition, fromConfig: false, actor: actor)
            return false
        }
        guard count < config.maxServices else {
            await context.recordLogged(NewEvent(.serviceRefused, service: name, actor: actor, detail: [
                "reason": "max_services", "limit": .int(Int64(config.maxServices)),
            ]))
            throw .tooManyServices(limit: config.maxServices)
        }
        try await add(name, definition, fromConfig: false, actor: actor)
        return true
    }

    /// Each defined service's `requires`.
    var dependencyEdges: [String: [String]] {
        Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0.definition.requires ?? []) })
    }

    /// Removes an API-defined service: refused while it is leased or running, required by
    /// another, or defined in the config file.
    func removeDefined(_ name: String, leases: Int, actor: Principal) async throws(LifecycleError) {
        let service = try service(named: name)
        await lock.lock()
        defer { lock.unlock() }
        if service.membership.withLock({ $0.fromConfig }) { throw .definedInConfig(name) }
        let requiredBy = DependencyGraph(dependencyEdges).requiredBy(name)
        guard requiredBy.isEmpty else { throw .serviceRequired(name, by: requiredBy) }
        guard service.mainProcess == nil, service.kernelCount().isZero, leases == 0 else { throw .serviceLeased(name) }
        try await remove(service, actor: actor)
    }
}
