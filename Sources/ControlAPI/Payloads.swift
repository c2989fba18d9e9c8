import AuditStore
import Foundation
import Lifecycle

// JSON bodies of the API (snake_case), as openapi.yaml describes them.

struct ServicePayload: Encodable {
    let name: String
    let state: String
    let pid: Int32?
    let count: Int?
    let leases: Int
    let key: Int32
    let semid: Int32
    let lastHealth: String?
    let failureReason: String?
    let lingerUntil: String?
    let source: String
    let definition: ServiceDefinition

    init(_ status: ServiceStatus) {
        name = status.name
        state = status.state.rawValue
        pid = status.pid
        count = status.count
        leases = status.leases
        key = status.key
        semid = status.semid
        lastHealth = status.lastHealth
        failureReason = status.failureReason
        lingerUntil = status.lingerUntil.map(Timestamp.format)
        source = status.source
        definition = status.definition
    }

    enum CodingKeys: String, CodingKey {
        case name, state, pid, count, leases, key, semid, definition, source
        case lastHealth = "last_health"
        case failureReason = "failure_reason"
        case lingerUntil = "linger_until"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(state, forKey: .state)
        try c.encode(pid, forKey: .pid)
        try c.encode(count, forKey: .count)
        try c.encode(leases, forKey: .leases)
        try c.encode(key, forKey: .key)
        try c.encode(semid, forKey: .semid)
        try c.encode(lastHealth, forKey: .lastHealth)
        try c.encode(failureReason, forKey: .failureReason)
        try c.encode(lingerUntil, forKey: .lingerUntil)
        try c.encode(source, forKey: .source)
        try c.encode(definition, forKey: .definition)
    }
}

struct ServiceListPayload: Encodable {
    let services: [ServicePayload]
}

/// A granted lease: the lease plus what the acquire did.
struct GrantPayload: Encodable {
    let grant: LeaseGrant

    enum CodingKeys: String, CodingKey { case count, started }

    func encode(to encoder: Encoder) throws {
        try LeasePayload(grant.lease).encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(grant.count, forKey: .count)
        try c.encode(grant.started, forKey: .started)
    }
}

/// A lease, with nulls written out so every field is always present.
struct LeasePayload: Encodable {
    let lease: LeaseInfo
    init(_ lease: LeaseInfo) { self.lease = lease }

    func encode(to encoder: Encoder) throws {
        typealias K = LeaseInfo.CodingKeys
        var c = encoder.container(keyedBy: K.self)
        try c.encode(lease.id, forKey: .id)
        try c.encode(lease.service, forKey: .service)
        try c.encode(lease.holder, forKey: .holder)
        try c.encode(lease.holderPID, forKey: .holderPID)
        try c.encode(lease.clientPID, forKey: .clientPID)
        try c.encode(lease.ttlMs, forKey: .ttlMs)
        try c.encode(lease.acquiredAt, forKey: .acquiredAt)
        try c.encode(lease.expiresAt, forKey: .expiresAt)
    }
}

struct LeaseListPayload: Encodable {
    let leases: [LeasePayload]
}

struct ReleasePayload: Encodable {
    let id: String
    let count: Int
    let serviceStopped: Bool

    enum CodingKeys: String, CodingKey {
        case id, count
        case serviceStopped = "service_stopped"
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
