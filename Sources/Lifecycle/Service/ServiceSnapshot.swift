import FoundationEssentials
import Posix
import LifecycleModel

/// What status shows of a service, copied out of its executor after each event.
struct ServiceSnapshot: Sendable {
    var state: ServiceState = .stopped
    /// When `state` last changed (wall clock).
    var stateSince = Date()
    var pid: Int32?
    var failureReason: String?
    var lastHealth: String?
    var lingerUntil: Date?
    /// Since when nothing has counted it, while it lingers or is frozen (the order in which
    /// a capacity group evicts idle members).
    var idleSince: Date {
        if state == .ready, let lingerUntil { return lingerUntil.addingTimeInterval(-Double(definition.lingerMs) / 1000) }
        return stateSince
    }
    /// Restarts and failed starts within the restart window.
    var restarts = 0
    /// Acquires waiting for a slot.
    var queued = 0
    var definition = ServiceDefinition(start: [])
    /// Grows with every publication: a status answer rendered from an equal version (and
    /// the same counts) is still true.
    var version: UInt64 = 0

    init() {}

    init(definition: ServiceDefinition) { self.definition = definition }

    func updated(machine: Machine, main: PidFD?, definition: ServiceDefinition) -> ServiceSnapshot {
        let now = monotonicMilliseconds()
        var next = self
        next.state = machine.state
        if next.state != state { next.stateSince = Date() }
        next.pid = main?.pid
        next.failureReason = machine.failureReason
        next.lastHealth = machine.lastHealth
        next.lingerUntil = machine.lingerUntil.map { Date().addingTimeInterval(Double($0 - now) / 1000) }
        next.restarts = machine.restarts(at: now)
        next.queued = machine.slotQueue.count
        next.definition = definition
        next.version = version &+ 1
        return next
    }
}
