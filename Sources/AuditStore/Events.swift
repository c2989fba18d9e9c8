import FoundationEssentials
import SQLite
import Wire

/// Every kind of lifecycle event procrefd records.
public enum EventKind: String, Sendable, Codable, CaseIterable {
    case daemonStarted = "daemon.started"
    case daemonStopped = "daemon.stopped"
    case daemonStaleSocketCleaned = "daemon.stale_socket_cleaned"
    case serviceDefined = "service.defined"
    case serviceStarting = "service.starting"
    case serviceReady = "service.ready"
    case serviceStartFailed = "service.start_failed"
    case serviceStopping = "service.stopping"
    case serviceStopped = "service.stopped"
    case serviceExited = "service.exited"
    case serviceAdopted = "service.adopted"
    case serviceUnhealthy = "service.unhealthy"
    case serviceRecovered = "service.recovered"
    case serviceRecoveryFailed = "service.recovery_failed"
    case serviceRestarting = "service.restarting"
    case serviceFailed = "service.failed"
    case serviceReset = "service.reset"
    case serviceRemoved = "service.removed"
    /// The kernel count could not be read (`errno`): nothing is stopped meanwhile.
    case serviceKernelUnreadable = "service.kernel_unreadable"
    /// The service's semaphore set was removed from outside (`ipcrm`); a new one replaces it
    /// (`key`, `semid`, `leases_lost`).
    case serviceSemaphoreRecreated = "service.semaphore_recreated"
    /// A connection to the service's front door started it (`connections`, `count`).
    case frontFirstConnection = "front.first_connection"
    /// The front door's last open connection closed (`connections`, `count`).
    case frontIdle = "front.idle"
    /// With `front_audit = "connections"`: a connection was accepted (`connection`, its
    /// number at the door; `peer`; the event's pid is the door's).
    case frontConnectionOpened = "front.connection_opened"
    /// With `front_audit = "connections"`: it closed (`connection`, `bytes_up`, `bytes_down`,
    /// `duration_ms`).
    case frontConnectionClosed = "front.connection_closed"
    /// A hook ran: `hook` (pre_start, post_ready, stop_command), `status`, `duration_ms`.
    case serviceHook = "service.hook"
    /// Idle with `idle = "freeze"`: its cgroup was frozen (`freeze_max_ms`).
    case serviceFrozen = "service.frozen"
    /// An acquire thawed it (`frozen_ms`).
    case serviceThawed = "service.thawed"
    /// Stopped, idle, to make room in its capacity group (`group`, `for`: the service that
    /// starts, `cost`).
    case serviceEvicted = "service.evicted"
    case processSignaled = "process.signaled"
    case processStopped = "process.stopped"
    case processRefused = "process.refused"
    case daemonConfigReloaded = "daemon.config_reloaded"
    case daemonConfigRejected = "daemon.config_rejected"
    case daemonReloadSkipped = "daemon.reload_skipped"
    case auditPruned = "audit.pruned"
    /// A commit failed for want of storage; records wait in memory (`backlog`).
    case auditStorageFull = "audit.storage_full"
    /// Every record that waited is committed again (`recorded`).
    case auditStorageRecovered = "audit.storage_recovered"
    case leaseAcquired = "lease.acquired"
    case leaseKeepalive = "lease.keepalive"
    case leaseReleased = "lease.released"
    case leaseExpired = "lease.expired"
    case leaseClientExited = "lease.client_exited"
    case leaseLost = "lease.lost"
    case leaseRevoked = "lease.revoked"
    case leaseReadopted = "lease.readopted"
    case leaseRefused = "lease.refused"
    /// An acquire of a slotted service waits for a slot (`position`, `wait_ms`).
    case leaseQueued = "lease.queued"
    /// A queued acquire stopped waiting (`reason`: timeout, disconnect, client_exit, service_stopped).
    case leaseQueueLeft = "lease.queue_left"
    case serviceRefused = "service.refused"
    /// A caller lacked the role or the service it needed (`request`, `reason`; `folded`
    /// refusals of the same caller in the second before).
    case accessDenied = "access.denied"
    /// A named token was made (`name`, `role`, `services`) or revoked.
    case tokenCreated = "token.created"
    case tokenRevoked = "token.revoked"
}

/// A value in an event's `detail` object.
public enum DetailValue: Sendable, Equatable, Codable {
    case string(String)
    case int(Int64)
    case bool(Bool)

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int64.self) { self = .int(value) }
        else { self = .string(try container.decode(String.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        }
    }
}

extension DetailValue {
    /// The detail object as JSON with sorted keys, written by hand (on every commit).
    static func json(_ detail: [String: DetailValue]) -> String {
        var out = "{"
        for (index, (key, value)) in detail.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { out += "," }
            out += JSONText.quoted(key)
            out += ":"
            switch value {
            case .string(let value): out += JSONText.quoted(value)
            case .int(let value): out += String(value)
            case .bool(let value): out += value ? "true" : "false"
            }
        }
        return out + "}"
    }
}

extension DetailValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

/// An event about to be recorded.
public struct NewEvent: Sendable {
    public var kind: EventKind
    public var service: String?
    public var lease: String?
    public var pid: Int32?
    /// Who caused it.
    public var actor: Principal
    public var detail: [String: DetailValue]

    public init(
        _ kind: EventKind, service: String? = nil, lease: String? = nil, pid: Int32? = nil,
        actor: Principal = .procrefd, detail: [String: DetailValue] = [:]
    ) {
        self.kind = kind
        self.service = service
        self.lease = lease
        self.pid = pid
        self.actor = actor
        self.detail = detail
    }
}

/// A recorded event. Encodes as the API's event object: every key present, nulls written.
public struct Event: Sendable, Codable, Equatable {
    public let id: Int64
    public let time: String
    public let kind: String
    public let service: String?
    public let lease: String?
    public let pid: Int32?
    /// Who caused it, in one line (`Principal.description`).
    public let actor: String
    public let detail: [String: DetailValue]
    /// Who caused it, field by field.
    public let by: Principal
    /// The event's link in the hash chain (hex); nil for events older than the chain.
    public let hash: String?

    public init(
        id: Int64, time: String, kind: String, service: String?, lease: String?, pid: Int32?, actor: String,
        detail: [String: DetailValue], by: Principal, hash: String?
    ) {
        (self.id, self.time, self.kind, self.service, self.lease, self.pid) = (id, time, kind, service, lease, pid)
        (self.actor, self.detail, self.by, self.hash) = (actor, detail, by, hash)
    }

    enum CodingKeys: String, CodingKey { case id, time, kind, service, lease, pid, actor, detail, by, hash }
    enum ByKeys: String, CodingKey { case kind, uid, user, pid, comm, name }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let b = try c.nestedContainer(keyedBy: ByKeys.self, forKey: .by)
        self.init(
            id: try c.decode(Int64.self, forKey: .id), time: try c.decode(String.self, forKey: .time),
            kind: try c.decode(String.self, forKey: .kind), service: try c.decodeIfPresent(String.self, forKey: .service),
            lease: try c.decodeIfPresent(String.self, forKey: .lease), pid: try c.decodeIfPresent(Int32.self, forKey: .pid),
            actor: try c.decode(String.self, forKey: .actor), detail: try c.decode([String: DetailValue].self, forKey: .detail),
            by: Principal(
                kind: Principal.Kind(rawValue: try b.decode(String.self, forKey: .kind)) ?? .daemon,
                uid: try b.decodeIfPresent(UInt32.self, forKey: .uid), user: try b.decodeIfPresent(String.self, forKey: .user),
                pid: try b.decodeIfPresent(Int32.self, forKey: .pid), comm: try b.decodeIfPresent(String.self, forKey: .comm),
                name: try b.decodeIfPresent(String.self, forKey: .name)),
            hash: try c.decodeIfPresent(String.self, forKey: .hash))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(time, forKey: .time)
        try c.encode(kind, forKey: .kind)
        try c.encode(service, forKey: .service)
        try c.encode(lease, forKey: .lease)
        try c.encode(pid, forKey: .pid)
        try c.encode(actor, forKey: .actor)
        try c.encode(detail, forKey: .detail)
        var b = c.nestedContainer(keyedBy: ByKeys.self, forKey: .by)
        try b.encode(by.kind.rawValue, forKey: .kind)
        try b.encode(by.uid, forKey: .uid)
        try b.encode(by.user, forKey: .user)
        try b.encode(by.pid, forKey: .pid)
        try b.encode(by.comm, forKey: .comm)
        try b.encode(by.name, forKey: .name)
        try c.encode(hash, forKey: .hash)
    }
}


extension StoreTransaction {
    /// Appends `event`; it is durable once the enclosing transaction commits.
    @discardableResult
    public func append(_ event: NewEvent) throws -> Event {
        let time = Timestamp.format(Date())
        let detail = DetailValue.json(event.detail)
        let actor = event.actor.description
        let by = event.actor
        // Linked to the newest event in this same transaction (a rolled-back event takes
        // its link with it).
        let (id, previous) = try chainHead()
        let hash = AuditChain.link(previous, AuditChain.canonical(
            id: id, time: time, kind: event.kind.rawValue, service: event.service, lease: event.lease,
            pid: event.pid.map(Int64.init), actor: actor, detail: detail, by: by))
        // Cached statement: prepared once per connection, not on every event.
        var insert = DirectStatement(try db.cachedStatement(sql: """
            INSERT INTO events (id, time, kind, service, lease, pid, actor, detail, by_kind, by_uid, by_user, by_pid, by_comm, by_name, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """))
        insert.bind(id)
        insert.bind(time)
        insert.bind(event.kind.rawValue)
        insert.bind(event.service)
        insert.bind(event.lease)
        insert.bind(event.pid)
        insert.bind(actor)
        insert.bind(detail)
        insert.bind(by.kind.rawValue)
        insert.bind(by.uid.map(Int64.init))
        insert.bind(by.user)
        insert.bind(by.pid)
        insert.bind(by.comm)
        insert.bind(by.name)
        insert.bind(bytes: hash)
        try insert.run(in: db)
        chainAppended(id: id, hash: hash)
        appended.lastID = max(appended.lastID, id)
        return Event(
            id: id, time: time, kind: event.kind.rawValue, service: event.service, lease: event.lease, pid: event.pid,
            actor: actor, detail: event.detail, by: by, hash: AuditChain.hex(hash))
    }
}
