import AuditStore
import FoundationEssentials
import Lifecycle
import LifecycleModel
import Posix
import Wire

// JSON bodies of the API (snake_case), as openapi.yaml describes them.

struct ServicePayload: Encodable {
    let name: String
    let state: String
    let pid: Int32?
    let count: Int?
    let countError: String?
    let leases: Int
    let connections: Int?
    let front: [String]?
    let requires: [String]
    let requiredBy: [String]
    let key: Int32
    let semid: Int32
    let lastHealth: String?
    let failureReason: String?
    let lingerUntil: String?
    let source: String
    let definition: ServiceDefinition
    let stateSince: String
    let restarts: Int
    let queued: Int

    /// What stands in for an `env` value shown to someone who is not the admin.
    static let redacted = "<redacted>"

    /// `revealing`: `env` values as defined, for the admin (the Unix socket, or the admin
    /// token); for anyone else the keys with redacted values.
    init(_ status: ServiceStatus, revealing: Bool) {
        name = status.name
        state = status.state.rawValue
        pid = status.pid
        count = status.count
        countError = status.countError
        leases = status.leases
        connections = status.connections
        front = status.front
        requires = status.definition.requires ?? []
        requiredBy = status.requiredBy
        key = status.key
        semid = status.semid
        lastHealth = status.lastHealth
        failureReason = status.failureReason
        lingerUntil = status.lingerUntil.map(Timestamp.format)
        stateSince = Timestamp.format(status.stateSince)
        restarts = status.restarts
        queued = status.queued
        source = status.source
        var definition = status.definition
        if !revealing { definition.env = definition.env.mapValues { _ in Self.redacted } }
        self.definition = definition
    }

    enum CodingKeys: String, CodingKey {
        case name, state, pid, count, leases, connections, front, key, semid, definition, source
        case countError = "count_error"
        case lastHealth = "last_health"
        case failureReason = "failure_reason"
        case lingerUntil = "linger_until"
        case stateSince = "state_since"
        case restarts, queued, requires
        case requiredBy = "required_by"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(state, forKey: .state)
        try c.encode(pid, forKey: .pid)
        try c.encode(count, forKey: .count)
        try c.encode(countError, forKey: .countError)
        try c.encode(leases, forKey: .leases)
        try c.encode(connections, forKey: .connections)
        try c.encode(front, forKey: .front)
        try c.encode(requires, forKey: .requires)
        try c.encode(requiredBy, forKey: .requiredBy)
        try c.encode(key, forKey: .key)
        try c.encode(semid, forKey: .semid)
        try c.encode(lastHealth, forKey: .lastHealth)
        try c.encode(failureReason, forKey: .failureReason)
        try c.encode(lingerUntil, forKey: .lingerUntil)
        try c.encode(stateSince, forKey: .stateSince)
        try c.encode(restarts, forKey: .restarts)
        try c.encode(queued, forKey: .queued)
        try c.encode(source, forKey: .source)
        try c.encode(definition, forKey: .definition)
    }
}

struct ServiceListPayload: Encodable {
    let services: [ServicePayload]
}

/// A capacity group: `GET /v1/groups`.
struct GroupPayload: Encodable {
    let name: String
    let capacity: Int
    let inUse: Int
    let running: [String]
    let queued: [String]

    init(_ status: GroupStatus) {
        (name, capacity, inUse, running, queued) = (status.name, status.capacity, status.inUse, status.running, status.queued)
    }

    enum CodingKeys: String, CodingKey {
        case name, capacity, running, queued
        case inUse = "in_use"
    }
}

struct GroupListPayload: Encodable {
    let groups: [GroupPayload]
}

/// The answer to `DELETE /v1/services/{name}`.
struct ServiceRemovedPayload: Encodable {
    let name: String
    let removed: Bool
}

/// A granted lease: the lease plus what the acquire did.
/// Lease answers are the hot path: written by hand, not by JSONEncoder (same text, sorted keys).
protocol HandWrittenJSON {
    var jsonText: String { get }
}

struct GrantPayload: HandWrittenJSON {
    let grant: LeaseGrant

    var jsonText: String {
        var object = LeasePayload(grant.lease).object
        object.add("count", grant.count.map(Int64.init))
        object.add("started", grant.started)
        object.add("waited_ms", grant.waitedMs.map(Int64.init))
        return object.text
    }
}

/// `GET /v1/whoami`: who the caller is, as procrefd sees it, and its role.
struct WhoamiPayload: HandWrittenJSON {
    let caller: Caller
    let accessRules: Bool

    init(_ caller: Caller, accessRules: Bool) {
        self.caller = caller
        self.accessRules = accessRules
    }

    var jsonText: String {
        var object = JSONObjectText()
        let principal = caller.principal
        object.add("principal", principal.description)
        object.add("kind", principal.kind.rawValue)
        object.add("uid", principal.uid.map(Int64.init))
        object.add("user", principal.user)
        object.add("pid", principal.pid.map(Int64.init))
        object.add("comm", principal.comm)
        object.add("name", principal.name)
        object.add("role", caller.role.map(\.description))
        object.add("access_rules", accessRules)
        return object.text
    }
}

/// A lease, with nulls written out so every field is always present.
struct LeasePayload: HandWrittenJSON {
    let lease: LeaseInfo
    init(_ lease: LeaseInfo) { self.lease = lease }

    var object: JSONObjectText {
        var object = JSONObjectText()
        object.add("id", lease.id)
        object.add("service", lease.service)
        object.add("holder", lease.holder)
        object.add("holder_pid", Int64(lease.holderPID))
        object.add("client_pid", lease.clientPID.map(Int64.init))
        object.add("ttl_ms", lease.ttlMs)
        object.add("acquired_at", lease.acquiredAt)
        object.add("expires_at", lease.expiresAt)
        object.add("owner", lease.owner.description)
        object.add("owner_uid", lease.owner.uid.map(Int64.init))
        return object
    }

    var jsonText: String { object.text }
}

struct LeaseListPayload: HandWrittenJSON {
    let leases: [LeasePayload]

    var jsonText: String { #"{"leases":["# + leases.map(\.jsonText).joined(separator: ",") + "]}" }
}

struct ReleasePayload: HandWrittenJSON {
    let id: String
    let count: Int?
    let serviceStopped: Bool

    var jsonText: String {
        var object = JSONObjectText()
        object.add("id", id)
        object.add("count", count.map(Int64.init))
        object.add("service_stopped", serviceStopped)
        return object.text
    }
}


struct ProcessPayload: Encodable {
    let process: ManagedProcess

    enum CodingKeys: String, CodingKey {
        case pid, alive, state, owner, service, lease
        case startTime = "start_time"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(process.identity.pid, forKey: .pid)
        try c.encode(process.alive, forKey: .alive)
        try c.encode(process.identity.startTime, forKey: .startTime)
        try c.encode(process.state, forKey: .state)
        try c.encode(process.owner.kind, forKey: .owner)
        switch process.owner {
        case .service(let name, _):
            try c.encode(name, forKey: .service)
            try c.encodeNil(forKey: .lease)
        case let .holder(service, lease):
            try c.encode(service, forKey: .service)
            try c.encode(lease, forKey: .lease)
        }
    }
}

/// The body of `POST /v1/services/{name}/leases`.
struct AcquireBody: Decodable {
    var request = AcquireRequest()

    init() {}

    /// The body read from the strict check's members, without Foundation's decoder (the
    /// acquire is the hot path: the decoder cost ~4 % of procrefd's CPU per lease cycle,
    /// see bench/RESULTS.md). nil unless every member is known and of its kind and in range;
    /// then the decoder reads the body and names what is wrong.
    static func plain(_ strict: StrictJSON) -> AcquireBody? {
        guard let members = strict.members else { return nil }
        var request = AcquireRequest()
        for (key, member) in members {
            switch (key, member) {
            case ("holder", .string(let holder)): request.holder = holder
            case ("ttl_ms", .integer(let ttl)): request.ttlMs = ttl
            case ("client_pid", .integer(let pid)):
                guard let pid = Int32(exactly: pid) else { return nil }
                request.clientPID = pid
            case ("wait_ms", .integer(let wait)):
                guard let wait = Int(exactly: wait) else { return nil }
                request.waitMs = wait
            default: return nil
            }
        }
        var body = AcquireBody()
        body.request = request
        return body
    }

    init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: ["holder", "ttl_ms", "client_pid", "wait_ms"], at: nil)
        let c = try decoder.container(keyedBy: AnyCodingKey.self)
        request = AcquireRequest(
            holder: try c.decodeIfPresent(String.self, forKey: AnyCodingKey("holder")) ?? "",
            ttlMs: try c.decodeIfPresent(Int64.self, forKey: AnyCodingKey("ttl_ms")),
            clientPID: try c.decodeIfPresent(Int32.self, forKey: AnyCodingKey("client_pid")),
            waitMs: try c.decodeIfPresent(Int.self, forKey: AnyCodingKey("wait_ms")) ?? 0)
    }
}

struct SignalRequest: Decodable {
    let signal: String
    init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: ["signal"], at: nil)
        signal = try decoder.container(keyedBy: AnyCodingKey.self).decode(String.self, forKey: AnyCodingKey("signal"))
    }
}

struct StopProcessRequest: Decodable {
    let timeoutMs: Int
    init(timeoutMs: Int) { self.timeoutMs = timeoutMs }
    init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: ["timeout_ms"], at: nil)
        timeoutMs = try decoder.container(keyedBy: AnyCodingKey.self).decodeIfPresent(Int.self, forKey: AnyCodingKey("timeout_ms")) ?? 5_000
    }
}

struct SignalPayload: Encodable {
    let pid: Int32
    let signal: String
    let owner: String
}

struct StopProcessPayload: Encodable {
    let pid: Int32
    let endedBy: String
    let owner: String

    enum CodingKeys: String, CodingKey {
        case pid, owner
        case endedBy = "ended_by"
    }
}
