import FoundationEssentials
import Posix
import Wire

/// The hooks: commands run beside the service's own, as its user, in its cgroup, with their
/// output in its log (see `ServiceExecutor+Hooks.swift`).
extension ServiceDefinition {
    /// Each hook the definition names, with its field.
    var hooks: [(hook: ServiceHook, argv: [String])] {
        [(ServiceHook.preStart, preStart), (.postReady, postReady), (.stopCommand, stopCommand)].compactMap { hook, argv in
            argv.map { (hook, $0) }
        }
    }

    func validateHooks() throws(DefinitionError) {
        for (hook, argv) in hooks {
            guard !isLock else { throw DefinitionError(field: hook.rawValue, message: "needs a start command (a service with no start is a lock)") }
            guard let program = argv.first, !program.isEmpty else {
                throw DefinitionError(field: hook.rawValue, message: "must be a non-empty argv array, its program first")
            }
            guard argv.count <= 256, argv.allSatisfy({ !$0.utf8.contains(0) }) else {
                throw DefinitionError(field: hook.rawValue, message: "at most 256 arguments, none with a NUL byte")
            }
        }
    }
}

/// A command a service runs beside its main process.
public enum ServiceHook: String, Sendable, CaseIterable {
    case preStart = "pre_start"
    case postReady = "post_ready"
    case stopCommand = "stop_command"
}
