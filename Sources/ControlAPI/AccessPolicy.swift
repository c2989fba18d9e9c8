import AuditStore
import MicroHTTPD
import Posix
import Synchronization

/// What a GET reads, for deciding which reads answer over TCP without a token.
public enum ReadScope: String, CaseIterable, Sendable {
    /// `/v1/status`, `/v1/daemon`, `/v1/leases`.
    case status
    /// `/metrics`.
    case metrics
    /// `/v1/services` and `/v1/services/{name}` (env values only to the admin).
    case services
    /// `/v1/events`: the audit log, its streams and long-polls.
    case events
    /// `/v1/services/{name}/logs`: a service's output.
    case logs
    /// `/v1/processes/{pid}`: which pids exist and who runs them. Never open.
    case processes

    /// Open over TCP by default: what scrapers and `curl` read.
    public static let openByDefault: Set<ReadScope> = [.status, .metrics, .services]
    /// What `[security] tcp_open_reads` may name.
    public static let openable: Set<ReadScope> = [.status, .metrics, .services, .events, .logs]
}

/// Who may do what. Over the Unix socket: everything (its file mode is the guard). Over TCP:
/// changes need `Authorization: Bearer <token>` (the admin token); reads in `openReads` need
/// nothing, other reads the read token or the admin one. `GET /v1/health` and the
/// dashboard's files always answer.
public struct AccessPolicy: Sendable {
    public var token: String
    public var readToken: String?
    /// Reads that answer over TCP without a token.
    public var openReads: Set<ReadScope>
    /// Host and Origin checks, on every listener.
    public var browsers: BrowserGuard

    public init(
        token: String, readToken: String? = nil, openReads: Set<ReadScope> = ReadScope.openByDefault,
        browsers: BrowserGuard = BrowserGuard()
    ) {
        self.token = token
        self.readToken = readToken
        self.openReads = openReads
        self.browsers = browsers
    }

    /// Whether `request` may use a route that needs `need`.
    func allows(_ request: HTTPRequest, _ need: RouteAccess) -> Bool {
        if request.transport == .unix { return true }
        switch need {
        case .open: return true
        case .read(let scope):
            if openReads.contains(scope) { return true }
            guard let presented = Self.bearer(request) else { return false }
            return Self.constantTimeEqual(presented, Array(token.utf8))
                || readToken.map { Self.constantTimeEqual(presented, Array($0.utf8)) } == true
        case .change:
            return Self.bearer(request).map { Self.constantTimeEqual($0, Array(token.utf8)) } ?? false
        }
    }

    /// Who `request` acts as: on the Unix socket the peer the kernel names (uid, user, pid,
    /// comm); over TCP the token it presents (`admin`, `read`, or `anonymous`).
    func principal(of request: HTTPRequest) -> Principal {
        if let peer = request.peer {
            return .peer(uid: peer.uid, user: UserNames.name(of: peer.uid), pid: peer.pid, comm: peer.comm)
        }
        if request.transport == .unix { return Principal(kind: .peer) }  // no credentials (an in-process test)
        guard let presented = Self.bearer(request) else { return .token("anonymous") }
        if Self.constantTimeEqual(presented, Array(token.utf8)) { return .token("admin") }
        if let readToken, Self.constantTimeEqual(presented, Array(readToken.utf8)) { return .token("read") }
        return .token("anonymous")
    }

    /// The admin: the Unix socket, or TCP with the admin token. Only the admin sees
    /// secrets (service `env` values).
    func isAdmin(_ request: HTTPRequest) -> Bool { allows(request, .change) }

    private static func bearer(_ request: HTTPRequest) -> [UInt8]? {
        guard let header = request.header("authorization"), header.hasPrefix("Bearer ") else { return nil }
        return Array(header.utf8.dropFirst(7))
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess matched.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}

/// What a route needs over TCP.
enum RouteAccess: Sendable, Equatable {
    /// Anyone: `GET /v1/health` and the dashboard's files.
    case open
    /// A read of `scope`.
    case read(ReadScope)
    /// A change: the admin token.
    case change
}

/// User names by uid, looked up once (the passwd database is not read per request).
enum UserNames {
    private static let cache = Mutex<[UInt32: String]>([:])
    private static let limit = 4_096

    static func name(of uid: UInt32) -> String? {
        if let known = cache.withLock({ $0[uid] }) { return known }
        guard let name = Accounts.user(String(uid))?.name else { return nil }
        cache.withLock { names in
            if names.count >= limit { names.removeAll() }
            names[uid] = name
        }
        return name
    }
}
