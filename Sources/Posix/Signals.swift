import Glibc
import SystemPackage

/// Signal names procrefd accepts and prints.
public enum Signals {
    public static let byName: [String: Int32] = [
        "TERM": SIGTERM, "KILL": SIGKILL, "HUP": SIGHUP, "INT": SIGINT,
        "USR1": SIGUSR1, "USR2": SIGUSR2, "QUIT": SIGQUIT,
    ]

    public static func name(of signo: Int32) -> String {
        byName.first { $0.value == signo }.map { "SIG" + $0.key } ?? "signal \(signo)"
    }

    public static func number(named name: String) -> Int32? {
        let upper = name.uppercased()
        return byName[upper.hasPrefix("SIG") ? String(upper.dropFirst(3)) : upper]
    }

    /// Signals a whole process group. ESRCH (group already gone) is reported as false.
    @discardableResult
    public static func sendToGroup(_ group: Int32, _ signo: Int32) throws(SystemCallError) -> Bool {
        guard group > 1 else { throw SystemCallError("killpg", errno: .invalidArgument) }
        if kill(-group, signo) == 0 { return true }
        let error = SystemCallError.current("killpg")
        if error.errno == .noSuchProcess { return false }
        throw error
    }

    /// True while any process is left in the group.
    public static func groupExists(_ group: Int32) -> Bool {
        group > 1 && (kill(-group, 0) == 0 || errno == EPERM)
    }
}
