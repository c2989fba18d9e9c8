import CPosixShims
import Glibc
import SystemPackage

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
