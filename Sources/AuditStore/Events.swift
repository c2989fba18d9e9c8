import Foundation
import GRDB
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

/// Who caused an event: a remote client, the Unix socket, or procrefd itself.
public enum EventActor {
    public static let procrefd = "procrefd"
    public static let unixSocket = "unix-socket"
}

/// An event about to be recorded.
public struct NewEvent: Sendable {
    public var kind: EventKind
    public var service: String?
    public var lease: String?
    public var pid: Int32?
    public var actor: String
    public var detail: [String: DetailValue]

    public init(
        _ kind: EventKind, service: String? = nil, lease: String? = nil, pid: Int32? = nil,
        actor: String = EventActor.procrefd, detail: [String: DetailValue] = [:]
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
    public let actor: String
    public let detail: [String: DetailValue]

    enum CodingKeys: String, CodingKey { case id, time, kind, service, lease, pid, actor, detail }

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
    }
}


extension StoreTransaction {
    /// Appends `event`; it is durable once the enclosing transaction commits.
    @discardableResult
    public func append(_ event: NewEvent) throws -> Event {
        let time = Timestamp.format(Date())
        let detail = DetailValue.json(event.detail)
        // Cached statement: prepared once per connection, not on every event.
        var insert = DirectStatement(try db.cachedStatement(sql: "INSERT INTO events (time, kind, service, lease, pid, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?)"))
        insert.bind(time)
        insert.bind(event.kind.rawValue)
        insert.bind(event.service)
        insert.bind(event.lease)
        insert.bind(event.pid)
        insert.bind(event.actor)
        insert.bind(detail)
        try insert.run(in: db)
        appended.lastID = max(appended.lastID, db.lastInsertedRowID)
        return Event(
            id: db.lastInsertedRowID, time: time, kind: event.kind.rawValue, service: event.service,
            lease: event.lease, pid: event.pid, actor: event.actor, detail: event.detail)
    }
}
