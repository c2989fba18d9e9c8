import AuditStore
import Foundation
import Posix
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

    /// Removes an API-defined service: refused while it is leased or running, or defined in
    /// the config file.
    func removeDefined(_ name: String, leases: Int, actor: Principal) async throws(LifecycleError) {
        let service = try service(named: name)
        await lock.lock()
        defer { lock.unlock() }
        if service.membership.withLock({ $0.fromConfig }) { throw .definedInConfig(name) }
        guard service.mainProcess == nil, service.kernelCount().isZero, leases == 0 else { throw .serviceLeased(name) }
        try await remove(service, actor: actor)
    }
}
