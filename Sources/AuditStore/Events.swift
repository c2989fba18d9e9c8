import Foundation
import GRDB

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
    case leaseAcquired = "lease.acquired"
    case leaseKeepalive = "lease.keepalive"
    case leaseReleased = "lease.released"
    case leaseExpired = "lease.expired"
    case leaseClientExited = "lease.client_exited"
    case leaseLost = "lease.lost"
    case leaseRevoked = "lease.revoked"
    case leaseReadopted = "lease.readopted"
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

extension DetailValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

/// Who caused an event: a remote client, the Unix socket, or procrefd itself.
public enum Actor {
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
        actor: String = Actor.procrefd, detail: [String: DetailValue] = [:]
    ) {
        self.kind = kind
        self.service = service
        self.lease = lease
        self.pid = pid
        self.actor = actor
        self.detail = detail
    }
}

/// A recorded event.
public struct Event: Sendable, Codable, Equatable {
    public let id: Int64
    public let time: String
    public let kind: String
    public let service: String?
    public let lease: String?
    public let pid: Int32?
    public let actor: String
    public let detail: [String: DetailValue]
}

/// Which events to read: every set field must match; `after` is the id cursor.
public struct EventFilter: Sendable, Equatable {
    public var service: String?
    public var kind: String?
    public var lease: String?
    public var after: Int64 = 0
    public var limit: Int = 100

    public init(service: String? = nil, kind: String? = nil, lease: String? = nil, after: Int64 = 0, limit: Int = 100) {
        self.service = service
        self.kind = kind
        self.lease = lease
        self.after = after
        self.limit = limit
    }
}

private let detailEncoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return encoder
}()

extension StoreTransaction {
    /// Appends `event`; it is durable once the enclosing transaction commits.
    @discardableResult
    public func append(_ event: NewEvent) throws -> Event {
        let time = Timestamp.format(Date())
        let detail = String(decoding: try detailEncoder.encode(event.detail), as: UTF8.self)
        try db.execute(
            sql: "INSERT INTO events (time, kind, service, lease, pid, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            arguments: [time, event.kind.rawValue, event.service, event.lease, event.pid, event.actor, detail])
        return Event(
            id: db.lastInsertedRowID, time: time, kind: event.kind.rawValue, service: event.service,
            lease: event.lease, pid: event.pid, actor: event.actor, detail: event.detail)
    }
}

extension StoreReader {
    /// Events matching `filter`, oldest first, at most `filter.limit`.
    public func events(_ filter: EventFilter) throws -> [Event] {
        var clauses = ["id > ?"]
        var arguments: StatementArguments = [filter.after]
        if let service = filter.service {
            clauses.append("service = ?")
            arguments += [service]
        }
        if let kind = filter.kind {
            clauses.append("kind = ?")
            arguments += [kind]
        }
        if let lease = filter.lease {
            clauses.append("lease = ?")
            arguments += [lease]
        }
        arguments += [filter.limit]
        let sql = "SELECT * FROM events WHERE \(clauses.joined(separator: " AND ")) ORDER BY id LIMIT ?"
        let decoder = JSONDecoder()
        return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
            let detailText: String = row["detail"]
            let detail = (try? decoder.decode([String: DetailValue].self, from: Data(detailText.utf8))) ?? [:]
            return Event(
                id: row["id"], time: row["time"], kind: row["kind"], service: row["service"],
                lease: row["lease"], pid: row["pid"], actor: row["actor"], detail: detail)
        }
    }

    /// The highest event id, 0 when empty.
    public func lastEventID() throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(id), 0) FROM events") ?? 0
    }
}
