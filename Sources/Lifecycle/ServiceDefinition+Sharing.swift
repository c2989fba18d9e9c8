import FoundationEssentials
import Posix
import Wire

// What lets services share one box: warm idle, dependencies, capacity groups.

/// Warm idle (`idle = "freeze"`).
extension ServiceDefinition {
    public static let defaultFreezeMaxMs = 600_000
    public static let freezeMaxRange = 1_000...86_400_000

    /// Idle, it is frozen rather than stopped.
    public var freezesWhenIdle: Bool { idle == "freeze" }

    func validateIdle() throws(DefinitionError) {
        guard idle == nil || idle == "stop" || idle == "freeze" else {
            throw DefinitionError(field: "idle", message: "must be \"stop\" or \"freeze\"")
        }
        if let freezeMaxMs {
            guard freezesWhenIdle else { throw DefinitionError(field: "freeze_max_ms", message: "applies only with idle = \"freeze\"") }
            guard Self.freezeMaxRange.contains(freezeMaxMs) else {
                throw DefinitionError(field: "freeze_max_ms", message: "must be within \(Self.freezeMaxRange)")
            }
        }
        if freezesWhenIdle, isLock { throw DefinitionError(field: "idle", message: "\"freeze\" needs a start command (a lock has nothing to freeze)") }
    }
}

/// Dependencies (`requires`); the graph's checks are the registry's (`DependencyGraph`).
extension ServiceDefinition {
    public static let maxRequires = 32

    func validateRequires() throws(DefinitionError) {
        guard let requires else { return }
        guard !isLock else { throw DefinitionError(field: "requires", message: "needs a start command (a lock has no process to hold its dependencies)") }
        guard requires.count <= Self.maxRequires else { throw DefinitionError(field: "requires", message: "at most \(Self.maxRequires) services") }
        for name in requires where !ServiceName.isValid(name) {
            throw DefinitionError(field: "requires", message: "\(name.debugDescription) is not a service name")
        }
        guard Set(requires).count == requires.count else { throw DefinitionError(field: "requires", message: "names a service twice") }
    }
}

/// Capacity groups (`capacity_group`, `cost`); the group's existence is the coordinator's check.
extension ServiceDefinition {
    public static let costRange = 0...1_000_000

    func validateGroup() throws(DefinitionError) {
        guard let group = capacityGroup else {
            if cost != nil { throw DefinitionError(field: "cost", message: "needs capacity_group") }
            return
        }
        guard ServiceName.isValid(group) else { throw DefinitionError(field: "capacity_group", message: "\(group.debugDescription) is not a group name") }
        guard !isLock else { throw DefinitionError(field: "capacity_group", message: "needs a start command (a lock takes no capacity)") }
        if let cost, !Self.costRange.contains(cost) { throw DefinitionError(field: "cost", message: "must be within \(Self.costRange)") }
    }
}
