/// Who caused something: a process on the Unix socket (its credentials come from the kernel,
/// `SO_PEERCRED`, and cannot be forged), the holder of a named token over TCP, or procrefd
/// itself. Carried with a request into every handler and every record.
public struct Principal: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// A process on the Unix socket.
        case peer
        /// A bearer token over TCP (`token` names it).
        case token
        /// Nobody asked: procrefd itself, or its config file.
        case daemon
    }

    public var kind: Kind
    /// The caller's uid and user name (a peer).
    public var uid: UInt32?
    public var user: String?
    /// The caller's process and its `comm` (a peer).
    public var pid: Int32?
    public var comm: String?
    /// The token's name (a token principal), or procrefd's own name for itself.
    public var name: String?

    public init(kind: Kind, uid: UInt32? = nil, user: String? = nil, pid: Int32? = nil, comm: String? = nil, name: String? = nil) {
        self.kind = kind
        self.uid = uid
        self.user = user
        self.pid = pid
        self.comm = comm
        self.name = name
    }

    /// procrefd acting on its own (an expiry, a lost holder, a reconciliation).
    public static let procrefd = Principal(kind: .daemon, name: "procrefd")
    /// The config file (services defined or reloaded from it).
    public static let config = Principal(kind: .daemon, name: "config")

    /// A process on the Unix socket, by its kernel credentials.
    public static func peer(uid: UInt32, user: String?, pid: Int32?, comm: String?) -> Principal {
        Principal(kind: .peer, uid: uid, user: user, pid: pid, comm: comm)
    }

    /// A token's holder over TCP, from `address`.
    public static func token(_ name: String) -> Principal { Principal(kind: .token, name: name) }

    /// Whether `other` is the same party: the same uid on the socket, the same token, the
    /// same daemon role (the pid may differ: one user's shells and scripts are one owner).
    public func isSameParty(as other: Principal) -> Bool {
        guard kind == other.kind else { return false }
        switch kind {
        case .peer: return uid != nil && uid == other.uid
        case .token, .daemon: return name == other.name
        }
    }

    /// The party a lease limit counts (`uid:N`, `token:NAME`); nil for procrefd itself.
    public var partyKey: String? {
        switch kind {
        case .peer: return uid.map { "uid:\($0)" }
        case .token: return name.map { "token:\($0)" }
        case .daemon: return nil
        }
    }

    /// The `actor` column: `procrefd`, `config`, `token:NAME`, or `USER (uid UID)`.
    public var description: String {
        switch kind {
        case .daemon: return name ?? "procrefd"
        case .token: return "token:\(name ?? "?")"
        case .peer:
            let id = "uid \(uid.map(String.init) ?? "?")"
            return user.map { "\($0) (\(id))" } ?? id
        }
    }
}
