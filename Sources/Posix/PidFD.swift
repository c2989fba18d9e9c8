import CPosixShims
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

/// An owned process file descriptor: signals sent through it can never reach a recycled pid,
/// and it becomes readable when the process exits. Closed on deinit.
public final class PidFD: Sendable {
    public let fd: Int32
    public let identity: ProcessIdentity

    /// Opens a pidfd for `identity`, verifying afterwards that the pid still has the same start
    /// time (so the descriptor refers to that very process).
    public init(identity: ProcessIdentity) throws(SystemCallError) {
        let fd = try check("pidfd_open", procref_pidfd_open(identity.pid))
        guard identity.isAlive else {
            close(fd)
            throw SystemCallError("pidfd_open", errno: .noSuchProcess)
        }
        self.fd = fd
        self.identity = identity
    }

    /// Opens a pidfd for a child this process spawned and has not reaped: its pid cannot
    /// have been recycled, even if it already exited (the pidfd then reaps the zombie).
    public init(child identity: ProcessIdentity) throws(SystemCallError) {
        fd = try check("pidfd_open", procref_pidfd_open(identity.pid))
        self.identity = identity
    }

    public var pid: Int32 { identity.pid }

    public func signal(_ signo: Int32) throws(SystemCallError) {
        try check("pidfd_send_signal", procref_pidfd_send_signal(fd, signo))
    }

    /// Reaps the process if it is our child and has exited. nil: still running, or not our child.
    public func reap(block: Bool = false) -> ExitStatus? {
        var exited: Int32 = 0, bySignal: Int32 = 0, status: Int32 = 0
        guard procref_waitid_pidfd(fd, block ? 0 : 1, &exited, &bySignal, &status) == 0, exited != 0 else { return nil }
        Children.reaped(pid)
        return bySignal != 0 ? .signaled(signal: status) : .exited(code: status)
    }

    deinit { close(fd) }
}

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

extension PidFD {
    /// Waits up to `timeoutMs` for the process to exit and reaps it (our children only).
    /// Blocks the calling thread: use for short waits (health-check commands).
    public func waitForExit(timeoutMs: Int) -> ExitStatus? {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        while true {
            if let status = reap() { return status }
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { return nil }
            var ready: Int32 = 0, unused: Int32 = 0
            _ = procref_poll2(fd, -1, Int32(left), &ready, &unused)
        }
    }
}

/// Connection probes used by health checks.
public enum Probe {
    /// True when a TCP connection to host:port succeeds within `timeoutMs`.
    public static func tcp(host: String, port: Int, timeoutMs: Int) -> Result<Void, SystemCallError> {
        procref_tcp_probe(host, String(port), Int32(timeoutMs)) == 0 ? .success(()) : .failure(.current("connect"))
    }

    /// True when a connection to the Unix socket at `path` succeeds within `timeoutMs`.
    public static func unix(path: String, timeoutMs: Int) -> Result<Void, SystemCallError> {
        procref_unix_probe(path, Int32(timeoutMs)) == 0 ? .success(()) : .failure(.current("connect"))
    }
}

/// Listening sockets handed to the HTTP server.
public enum Listener {
    /// A TCP listener on a numeric address; returns the descriptor and the bound port.
    public static func tcp(host: String, port: UInt16, backlog: Int32 = 511) throws(SystemCallError) -> (fd: Int32, port: UInt16) {
        var bound: UInt16 = 0
        let fd = try check("listen(\(host):\(port))", procref_tcp_listen(host, port, backlog, &bound))
        return (fd, bound)
    }

    /// A Unix socket listener at `path` with exactly `mode`.
    public static func unix(path: String, mode: UInt32, backlog: Int32 = 511) throws(SystemCallError) -> Int32 {
        try check("listen(\(path))", procref_unix_listen(path, mode, backlog))
    }
}
