import CPosixShims
import Glibc

/// Where the service listens.
enum Upstream {
    case tcp(host: String, port: String)
    case unix(String)

    init?(_ text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/") else { return nil }
            self = .unix(path)
            return
        }
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let port = String(text[text.index(after: colon)...])
        guard !host.isEmpty, UInt16(port) != nil else { return nil }
        self = .tcp(host: host, port: port)
    }

    /// A non-blocking connect begun (it may still be in progress), or -1.
    func beginConnect() -> Int32 {
        switch self {
        case let .tcp(host, port): return procref_tcp_connect_begin(host, port, 0)
        case .unix(let path): return procref_unix_connect_begin(path)
        }
    }
}

/// One direction of a connection: bytes read from `from` wait in a pipe until `to` takes them.
struct Flow {
    var pipe: (read: Int32, write: Int32) = (-1, -1)
    /// Bytes in the pipe, not yet written on.
    var buffered = 0
    /// `from` reached end of file (passed on once the pipe is empty).
    var ended = false
    /// The half-close was passed on: this direction is done.
    var closed = false

    /// Its source is to be read (1), or its destination written (2): what epoll watches.
    var wantsRead: UInt8 { !ended && buffered == 0 ? 1 : 0 }
    var wantsWrite: UInt8 { buffered > 0 ? 2 : 0 }
}

/// A client connection, from its accept to its close.
struct Connection {
    enum Phase { case pending, connecting, forwarding }
    let client: Int32
    var upstream: Int32 = -1
    var phase: Phase = .pending
    let acceptedAt: Int64
    /// Bytes forwarded on it, toward upstream and toward the client.
    var bytes = (up: 0, down: 0)
    var toUpstream = Flow()
    var toClient = Flow()
    /// What epoll watches on each descriptor (1 readable, 2 writable), changed only when needed.
    var clientWatch: UInt8 = 0
    var upstreamWatch: UInt8 = 2
}
