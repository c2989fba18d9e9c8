import CPosixShims
import Glibc

/// Unix SOCK_SEQPACKET sockets, as front doors and procrefd speak on them: whole messages,
/// each with at most one descriptor passed along it (SCM_RIGHTS).
public enum MessageSocket {
    /// A non-blocking listener at `path` with exactly `mode`.
    public static func listen(path: String, mode: UInt32, backlog: Int32 = 64) throws(SystemCallError) -> Int32 {
        try check("listen(\(path))", procref_door_listen_messages(path, mode, backlog))
    }

    /// One waiting connection, non-blocking and close-on-exec; nil when none waits.
    public static func accept(_ listener: Int32) -> Int32? {
        let fd = procref_door_accept(listener)
        return fd >= 0 ? fd : nil
    }

    /// Who is at the other end of a connected Unix socket, as the kernel says (SO_PEERCRED).
    public static func peer(_ fd: Int32) -> (uid: uid_t, pid: pid_t)? {
        var uid: uid_t = 0, pid: pid_t = 0
        return procref_door_peer(fd, &uid, &pid) == 0 ? (uid, pid) : nil
    }

    /// What a non-blocking receive found.
    public enum Received {
        /// A message, and the descriptor passed along it (-1 if none), now the caller's.
        case message([UInt8], passed: Int32)
        /// Nothing waits.
        case none
        /// The peer closed, or the socket failed.
        case ended
    }

    public static func receive(_ fd: Int32, limit: Int = 512) -> Received {
        var buffer = [UInt8](repeating: 0, count: limit)
        var passed: Int32 = -1
        let n = buffer.withUnsafeMutableBytes { procref_door_receive(fd, $0.baseAddress, $0.count, &passed) }
        if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK ? .none : .ended }
        if n == 0 {
            Descriptor.close(passed)
            return .ended
        }
        return .message(Array(buffer[0..<n]), passed: passed)
    }

    /// The TCP port a listening socket is bound to; nil for other sockets.
    public static func boundPort(_ fd: Int32) -> UInt16? {
        let port = procref_door_bound_port(fd)
        return port >= 0 ? UInt16(port) : nil
    }
}
