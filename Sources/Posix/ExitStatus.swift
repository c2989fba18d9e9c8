import Glibc

/// How a process ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case signaled(signal: Int32)

    public var description: String {
        switch self {
        case .exited(let code): return "exit code \(code)"
        case .signaled(let signal): return "signal \(Signals.name(of: signal))"
        }
    }
}

extension ExitStatus {
    /// How a process ended, for records: its status, or that it cannot be known because the
    /// process was not our child (adopted from an earlier procrefd).
    public static func describe(_ status: ExitStatus?) -> String { status?.description ?? "unknown (not our child)" }
}
