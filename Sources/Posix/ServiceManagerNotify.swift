import CPosixShims
import FoundationEssentials

/// Readiness and state for systemd's `Type=notify` (`sd_notify`): one datagram to
/// `$NOTIFY_SOCKET`, no library needed. Without that variable every call does nothing.
public enum ServiceManagerNotify {
    private static let socket = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"]

    /// Sends `state` (e.g. "READY=1\nMAINPID=123"). Errors are returned, not thrown: a
    /// service manager that went away must not stop the daemon.
    @discardableResult
    public static func send(_ state: String) -> SystemCallError? {
        guard let socket, !socket.isEmpty else { return nil }
        return procref_notify_socket(socket, state) == 0 ? nil : .current("sendto(\(socket))")
    }
}
