import Glibc
import Posix
import Wire

/// Where clients connect to a service's front door, or where the service itself listens:
/// `HOST:PORT` with a numeric host (`[V6]:PORT` for IPv6), or `unix:/PATH`.
public enum FrontAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    public init?(_ text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/"), path.utf8.count < 108, !path.utf8.contains(0) else { return nil }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            guard host.contains(":") else { return nil }
        } else if host.contains(":") {
            return nil  // an IPv6 host goes in brackets
        }
        var buffer = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET, host, &buffer) == 1 || inet_pton(AF_INET6, host, &buffer) == 1 else { return nil }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case let .tcp(host, port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }

    /// A TCP port below 1024, which only root may bind.
    var isPrivileged: Bool {
        if case .tcp(_, let port) = self { return port != 0 && port < 1024 }
        return false
    }

    /// Binds and listens: procrefd keeps this descriptor, and the door gets a copy. Returns
    /// it with the address bound (port 0 becomes the port the kernel chose). A Unix path left
    /// by an earlier run (a socket of ours that nobody answers) is replaced; any other file
    /// there is not touched.
    func listen() throws(LifecycleError) -> (fd: Int32, bound: FrontAddress) {
        if case .unix(let path) = self { try replaceStale(path) }
        do throws(SystemCallError) {
            switch self {
            case let .tcp(host, port):
                let (fd, bound) = try Listener.tcp(host: host, port: port, backlog: 1024)
                return (fd, .tcp(host: host, port: bound))
            case .unix(let path): return (try Listener.unix(path: path, mode: 0o666, backlog: 1024), self)
            }
        } catch {
            throw .invalidField(DefinitionError(field: "front", message: "\(self): \(error)"))
        }
    }

    private func replaceStale(_ path: String) throws(LifecycleError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        let isOurSocket = (info.st_mode & S_IFMT) == S_IFSOCK && info.st_uid == geteuid()
        guard isOurSocket, case .failure = Probe.unix(path: path, timeoutMs: 200) else {
            throw .invalidField(DefinitionError(field: "front", message: "\(self): the path is in use"))
        }
        unlink(path)
    }
}
