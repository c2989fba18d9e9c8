import AuditStore
import Glibc
import Lifecycle
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

    /// The role a read needs under `[access]`: the audit log, output and processes are
    /// the operator's; status (and one's own leases) anyone's the rules know.
    var role: Role? {
        switch self {
        case .status: return nil
        case .metrics, .services: return .reader
        case .events, .logs, .processes: return .operator
        }
    }
}

/// What a route needs.
enum RouteAccess: Sendable, Equatable {
    /// Anyone: `GET /v1/health`, `/v1/whoami` and the dashboard's files.
    case open
    /// A read of `scope`.
    case read(ReadScope)
    /// Taking, keeping and ending leases (whose: the handler checks service and owner).
    case lease
    /// Restart, reset, process control.
    case operate
    /// Define and remove services, stop the daemon.
    case administer

    /// The role it needs (a lease's service and owner are checked by its handler).
    var role: Role? {
        switch self {
        case .open: return nil
        case .read(let scope): return scope.role
        case .lease: return .leaser
        case .operate: return .operator
        case .administer: return .admin
        }
    }
}

/// Who is calling, and what they may do.
struct Caller: Sendable {
    let principal: Principal
    /// nil: none (an anonymous TCP client, or a peer `[access]` does not list).
    let role: Role?
    /// A peer's groups (for services' `lease` lists).
    let groups: Set<gid_t>
    /// A leaser token's services.
    var tokenServices: Set<String> = []

    func has(_ needed: Role) -> Bool { role.map { $0 >= needed } ?? false }

    /// Whether it may take leases on `service`, whose `lease` list is `list`: an operator
    /// any; a leaser token the services it names; a peer those whose list names it.
    func mayLease(_ service: String, _ list: [String]?) -> Bool {
        if has(.operator) { return true }
        if principal.kind == .token { return has(.leaser) && tokenServices.contains(service) }
        guard principal.kind == .peer, let uid = principal.uid, let list else { return false }
        return list.contains { AccessSubject($0)?.includes(uid: uid, groups: groups) == true }
    }

    /// Whether it may end or keep alive a lease `owner` took.
    func mayManage(leaseOf owner: Principal) -> Bool { has(.operator) || owner.isSameParty(as: principal) }
}

/// Who may do what.
///
/// Without `[access]` (`rules` nil), as before: the Unix socket is admin (its file mode is
/// the guard); over TCP changes need the admin token, reads in `openReads` nothing, other
/// reads the read token or the admin one. With `[access]`, a peer on the socket gets the
/// role the rules give its uid and groups (root and procrefd's uid: admin), and a service's
/// `lease` list says who may lease it; over TCP the admin token is admin and the read
/// token a reader. `GET /v1/health`, `/v1/whoami` and the dashboard's files always answer.
///
/// Immutable, and a class: every request reads the running one (a reload swaps it whole)
/// at the cost of one reference, not a copy of every field.
public final class AccessPolicy: Sendable {
    public let token: String
    public let readToken: String?
    /// Reads that answer over TCP without a token.
    public let openReads: Set<ReadScope>
    /// Host and Origin checks, on every listener.
    public let browsers: BrowserGuard
    /// `[access]`; nil: the socket's owner (and group) are admin.
    public let rules: AccessRules?
    /// Named tokens (set by the API, which keeps them current).
    let tokens: TokenBook?

    public init(
        token: String, readToken: String? = nil, openReads: Set<ReadScope> = ReadScope.openByDefault,
        browsers: BrowserGuard = BrowserGuard(), rules: AccessRules? = nil
    ) {
        self.token = token
        self.readToken = readToken
        self.openReads = openReads
        self.browsers = browsers
        self.rules = rules
        tokens = nil
    }

    private init(_ policy: AccessPolicy, tokens: TokenBook) {
        (token, readToken, openReads, browsers, rules) = (policy.token, policy.readToken, policy.openReads, policy.browsers, policy.rules)
        self.tokens = tokens
    }

    /// The same policy, knowing the named tokens.
    func with(tokens: TokenBook) -> AccessPolicy { AccessPolicy(self, tokens: tokens) }

    /// The caller of `request`: on the Unix socket the peer the kernel names (uid, user,
    /// pid, comm); over TCP the token it presents (`admin`, `read`, or `anonymous`).
    func caller(of request: HTTPRequest) -> Caller {
        if request.transport == .unix {
            guard let peer = request.peer else { return Caller(principal: Principal(kind: .peer), role: .admin, groups: []) }  // in-process tests
            let principal = Principal.peer(uid: peer.uid, user: UserNames.name(of: peer.uid), pid: peer.pid, comm: peer.comm)
            guard let rules else { return Caller(principal: principal, role: .admin, groups: []) }
            let groups = UserNames.groups(of: peer.uid, primary: peer.gid)
            return Caller(principal: principal, role: rules.role(uid: peer.uid, groups: groups), groups: groups)
        }
        guard let presented = Self.bearer(request) else { return Caller(principal: .token("anonymous"), role: nil, groups: []) }
        if Self.constantTimeEqual(presented, token.utf8) { return Caller(principal: .token("admin"), role: .admin, groups: []) }
        if let readToken, Self.constantTimeEqual(presented, readToken.utf8) {
            // Without [access] the read token reads everything, as it always has.
            return Caller(principal: .token("read"), role: rules == nil ? .operator : .reader, groups: [])
        }
        if let named = tokens?.lookup(secret: Array(presented)) {
            var caller = Caller(principal: .token(named.name), role: named.role, groups: [])
            caller.tokenServices = named.services
            return caller
        }
        return Caller(principal: .token("anonymous"), role: nil, groups: [])
    }

    /// Why `caller` may not use a route that needs `need` (nil: it may): 401 over TCP
    /// without a token that would do, 403 naming the role otherwise.
    func refusal(_ caller: Caller, _ request: HTTPRequest, _ need: RouteAccess) -> Problem? {
        let isChange = need == .lease || need == .operate || need == .administer
        let readToken = caller.principal == .token("read")
        switch need {
        case .open:
            return nil
        case .read(let scope):
            if request.transport == .tcp, openReads.contains(scope) { return nil }
            if let role = scope.role {
                if caller.has(role) { return nil }
            } else if caller.role != nil || (request.transport == .unix && rules != nil) {
                return nil  // status and one's own leases: anyone the rules know
            }
        case .lease where request.transport == .unix && rules != nil:
            return nil  // the handler checks the service's lease list and the lease's owner
        case .lease, .operate, .administer:
            if !readToken, let role = need.role, caller.has(role) { return nil }
        }
        if request.transport == .tcp, caller.role == nil || (readToken && isChange) {
            let which = isChange ? "the admin token (STATE/token)" : "the read token (STATE/read-token) or the admin one"
            var problem = Problem(
                status: 401, slug: "unauthorized", title: "Unauthorized", detail: "this call over TCP needs Authorization: Bearer <token>: \(which)")
            problem.headers = [("WWW-Authenticate", "Bearer")]
            return problem
        }
        let needed = need.role ?? .reader
        return .forbidden("\(caller.principal) has \(caller.role.map { "the \($0) role" } ?? "no role") in [access]; this call needs \(needed)")
    }

    /// Whether `request` may use a route that needs `need` (tests).
    func allows(_ request: HTTPRequest, _ need: RouteAccess) -> Bool { refusal(caller(of: request), request, need) == nil }

    private static func bearer(_ request: HTTPRequest) -> Substring.UTF8View? {
        guard let header = request.header("authorization"), header.hasPrefix("Bearer ") else { return nil }
        return header.dropFirst(7).utf8
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess matched.
    static func constantTimeEqual(_ a: Substring.UTF8View, _ b: String.UTF8View) -> Bool {
        if let result = a.withContiguousStorageIfAvailable({ left in b.withContiguousStorageIfAvailable { right in equal(left, right) } }), let result {
            return result
        }
        return constantTimeEqual(Array(a), Array(b))
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.withUnsafeBufferPointer { left in b.withUnsafeBufferPointer { equal(left, $0) } } }

    private static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}

extension Problem {
    /// 403 with what is missing.
    static func forbidden(_ detail: String) -> Problem {
        Problem(status: 403, slug: "access-denied", title: "Forbidden", detail: detail)
    }
}

/// User names and groups by uid, looked up once (the passwd and group databases are not
/// read per request); forgotten on a reload of `[access]`.
enum UserNames {
    private static let names = Mutex<[UInt32: String]>([:])
    private static let memberships = Mutex<[UInt32: Set<gid_t>]>([:])
    private static let limit = 4_096

    static func name(of uid: UInt32) -> String? {
        if let known = names.withLock({ $0[uid] }) { return known }
        guard let name = Accounts.user(String(uid))?.name else { return nil }
        names.withLock { cache in
            if cache.count >= limit { cache.removeAll() }
            cache[uid] = name
        }
        return name
    }

    /// The user's groups (its primary one, `primary`, included).
    static func groups(of uid: UInt32, primary: gid_t) -> Set<gid_t> {
        if let known = memberships.withLock({ $0[uid] }) { return known.union([primary]) }
        let groups = Accounts.user(String(uid)).map { Accounts.groups(of: $0) } ?? []
        memberships.withLock { cache in
            if cache.count >= limit { cache.removeAll() }
            cache[uid] = groups
        }
        return groups.union([primary])
    }

    static func forget() {
        names.withLock { $0.removeAll() }
        memberships.withLock { $0.removeAll() }
    }
}
