import FoundationEssentials
import Glibc

/// Places where a test can make procrefd die at a chosen moment, to prove what a crash
/// there leaves behind is found again. `PROCREFD_FAULT=<name>` in procrefd's environment
/// arms one; unset (always, outside tests) each check is one comparison.
enum FaultPoint: String, Sendable {
    /// A service process was spawned; its record is not committed yet.
    case afterServiceSpawn = "after-service-spawn"

    private static let armed: FaultPoint? = ProcessInfo.processInfo.environment["PROCREFD_FAULT"].flatMap(FaultPoint.init)

    /// SIGKILLs procrefd itself when `point` is armed.
    static func hit(_ point: FaultPoint) {
        if armed == point { kill(getpid(), SIGKILL) }
    }
}
