import FoundationEssentials

/// Which listener a request arrived on. Authorization differs: the Unix socket is guarded by
/// its file mode, TCP by a bearer token.
public enum Transport: String, Sendable {
    case tcp
    case unix
}

/// Who is at the other end of a Unix socket, as the kernel says (`SO_PEERCRED`, read once
/// when the connection opened): it cannot be forged by the caller.
public struct PeerCredentials: Sendable, Hashable {
    public let uid: UInt32
    public let gid: UInt32
    public let pid: Int32
    /// The process's `comm` (`/proc/PID/comm`) when the connection opened; nil if unreadable.
    public let comm: String?

    public init(uid: UInt32, gid: UInt32, pid: Int32, comm: String?) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.comm = comm
    }
}

/// A complete HTTP request (body fully read).
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query string.
    public var path: String
    /// The first value of each query parameter.
    public var query: [String: String]
    /// Every query parameter in order, repeats included.
    public var queryItems: [(name: String, value: String)]
    /// Header names lower-cased.
    public var headers: [String: String]
    public var body: [UInt8]
    public var transport: Transport
    /// "127.0.0.1:port" or "unix".
    public var remoteAddress: String
    /// The caller's credentials on the Unix socket; nil over TCP.
    public var peer: PeerCredentials?
    /// What the responder learned of the request before its handler runs (who is calling),
    /// so the handler need not work it out again.
    public var attachment: (any Sendable)?
    /// The connection's socket, -1 when there is none (tests). It stays open while the
    /// request waits for its answer: a handler may watch it for the client hanging up.
    public var connectionFD: Int32 = -1

    public init(
        method: String, path: String, queryItems: [(name: String, value: String)] = [], headers: [String: String] = [:],
        body: [UInt8] = [], transport: Transport = .tcp, remoteAddress: String = "test", peer: PeerCredentials? = nil
    ) {
        self.peer = peer
        self.method = method
        self.path = path
        self.queryItems = queryItems
        self.query = queryItems.reduce(into: [:]) { query, item in
            if query[item.name] == nil { query[item.name] = item.value }
        }
        self.headers = headers
        self.body = body
        self.transport = transport
        self.remoteAddress = remoteAddress
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }

    /// Every value of a query parameter (`?kind=a&kind=b`).
    public func queryValues(_ name: String) -> [String] {
        queryItems.filter { $0.name == name }.map(\.value)
    }
}

/// An HTTP response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// When set, the body is produced over time (chunked) and `body` is ignored.
    public var stream: HTTPBodyStream?

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = [], stream: HTTPBodyStream? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
    }

    /// An RFC 9457 problem details response.
    /// An RFC 9457 problem; `extensions` are extra members (numbers) beside the standard ones.
    public static func problem(
        status: Int, title: String, detail: String, type: String = "about:blank", extensions: [String: Int] = [:]
    ) -> HTTPResponse {
        var object: [String: ProblemMember] = ["type": .text(type), "title": .text(title), "status": .number(status), "detail": .text(detail)]
        for (name, value) in extensions { object[name] = .number(value) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = (try? encoder.encode(object)) ?? Data()
        return HTTPResponse(status: status, headers: [("Content-Type", "application/problem+json")], body: Array(body) + [10])
    }
}

/// A member of a problem document: text or a number.
enum ProblemMember: Encodable {
    case text(String)
    case number(Int)

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case let .text(text): try container.encode(text)
        case let .number(number): try container.encode(number)
        }
    }
}

/// A response body produced over time, sent with chunked encoding. The server never blocks
/// on it: when `next` has nothing, the connection is suspended until `whenReadable` fires.
public protocol HTTPBodyStream: Sendable {
    /// The next bytes; empty when nothing is ready yet; nil at the end of the stream.
    func next() -> [UInt8]?
    /// Calls `wake` once, when `next` may have more to say (data, or the end).
    func whenReadable(_ wake: @escaping @Sendable () -> Void)
    /// The response is finished (the client left, or the stream ended).
    func close()
}

/// A responder's first answer to a request, given on the HTTP thread.
public enum FirstAnswer: Sendable {
    /// The response, sent at once.
    case now(HTTPResponse)
    /// The connection is suspended while a task awaits the response.
    case later(@Sendable () async -> HTTPResponse)
    /// The connection is suspended until the function's callback is handed the response
    /// (exactly once, from any thread): an answer some other thread completes, with no task.
    case whenReady(@Sendable (@escaping @Sendable (HTTPResponse) -> Void) -> Void)
}

/// Answers requests. `firstAnswer` runs on an HTTP thread: it may block for what takes
/// microseconds (a helper's answer on a socket, a group commit), never for a slow wait,
/// which it returns as `.later`.
public protocol HTTPResponder: Sendable {
    func firstAnswer(to request: HTTPRequest) -> FirstAnswer
}
