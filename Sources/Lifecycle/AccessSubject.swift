import Glibc
import Posix
import Wire

/// Who an `[access]` list or a service's `lease` list names: everyone (`"*"`), a group
/// (`"group:NAME"`), or a user (a name or a uid). Resolved against the host's accounts when
/// the list is accepted: an unknown user or group is an error there, not a silent no-match.
public enum AccessSubject: Sendable, Hashable, CustomStringConvertible {
    case everyone
    case user(uid_t)
    case group(gid_t)

    /// Parses one entry; nil when it names no user or group of this host.
    public init?(_ text: String) {
        if text == "*" { self = .everyone; return }
        if text.hasPrefix("group:") {
            guard let gid = Accounts.group(String(text.dropFirst(6))) else { return nil }
            self = .group(gid)
            return
        }
        guard let account = Accounts.user(text) else { return nil }
        self = .user(account.uid)
    }

    /// Parses a list; throws naming the first entry that names nobody.
    public static func parse(_ list: [String], field: String) throws(DefinitionError) -> [AccessSubject] {
        var subjects: [AccessSubject] = []
        for entry in list {
            guard let subject = AccessSubject(entry) else {
                throw DefinitionError(field: field, message: "\(entry.debugDescription) is not \"*\", a user, or group:NAME of this host")
            }
            subjects.append(subject)
        }
        return subjects
    }

    /// Whether the caller (`uid`, in `groups`) is one of these.
    public func includes(uid: uid_t, groups: Set<gid_t>) -> Bool {
        switch self {
        case .everyone: return true
        case .user(let id): return id == uid
        case .group(let gid): return groups.contains(gid)
        }
    }

    public var description: String {
        switch self {
        case .everyone: return "*"
        case .user(let uid): return Accounts.user(String(uid))?.name ?? String(uid)
        case .group(let gid): return "group:\(gid)"
        }
    }
}

/// Who may do what (`[access]`): roles by list, each including the ones below it
/// (admin ⊃ operator ⊃ reader); who may lease a service is its own `lease` list. Root and
/// procrefd's own uid are always admin.
public struct AccessRules: Sendable, Equatable {
    public var admins: [AccessSubject]
    public var operators: [AccessSubject]
    public var readers: [AccessSubject]

    public init(admins: [AccessSubject] = [], operators: [AccessSubject] = [], readers: [AccessSubject] = []) {
        self.admins = admins
        self.operators = operators
        self.readers = readers
    }

    /// The highest role `uid` (in `groups`) has by these lists; nil: none.
    public func role(uid: uid_t, groups: Set<gid_t>) -> Role? {
        if uid == 0 || uid == geteuid() { return .admin }
        func listed(_ list: [AccessSubject]) -> Bool { list.contains { $0.includes(uid: uid, groups: groups) } }
        if listed(admins) { return .admin }
        if listed(operators) { return .operator }
        if listed(readers) { return .reader }
        return nil
    }
}

/// What a caller may do. Each includes the ones below it; `leaser` is what a service's
/// `lease` list grants (its own leases on that service).
public enum Role: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    /// Status, services (env redacted), metrics.
    case reader = 1
    /// Take, keep alive and end its own leases on the services it may lease.
    case leaser
    /// Restart and reset services, end any lease, process control, read everything.
    case `operator`
    /// Everything: define and remove services, stop the daemon.
    case admin

    public static func < (a: Role, b: Role) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .reader: return "reader"
        case .leaser: return "leaser"
        case .operator: return "operator"
        case .admin: return "admin"
        }
    }
}
