import CPosixShims
import Glibc

/// The daemon's own singleton probe (health checks connect through the I/O loop).
public enum Probe {
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
