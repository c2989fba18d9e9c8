import AuditStore
import LifecycleModel
import Posix

// What the machine's target (LifecycleModel, which imports nothing of the project) is given
// in procrefd's own terms.

/// The machine carries the request's principal into the records of what it decides.
extension Principal: Requester {}

/// A service's machine, its events and its actions, with procrefd's principals.
typealias Machine = ServiceMachine<Principal>
typealias MachineEvent = ServiceEvent<Principal>
typealias MachineAction = ServiceAction<Principal>

extension ServicePolicy {
    /// The numbers of `definition` the machine decides with.
    init(_ definition: ServiceDefinition) {
        self.init(
            readyTimeoutMs: definition.readyTimeoutMs, lingerMs: definition.lingerMs, restartBackoffMs: definition.restartBackoffMs,
            restartBackoffMaxMs: definition.restartBackoffMaxMs, restartLimit: definition.restartLimit,
            restartWindowMs: definition.restartWindowMs, pidFile: definition.pidFile,
            health: definition.health.map { Health(failures: $0.failures, intervalMs: $0.intervalMs, freshMs: $0.freshMs) },
            slots: definition.slots, isLock: definition.isLock)
        (hasPreStart, hasPostReady) = (definition.preStart != nil, definition.postReady != nil)
        freezeMaxMs = definition.freezesWhenIdle ? definition.freezeMaxMs ?? ServiceDefinition.defaultFreezeMaxMs : nil
    }
}

extension MainExit {
    /// How a main process ended, from its status (nil: not our child, so unknown).
    init(_ status: ExitStatus?) {
        self.init(succeeded: status == .exited(code: 0), description: ExitStatus.describe(status))
    }
}
