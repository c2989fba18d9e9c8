import FoundationEssentials
import SQLite
import Wire

/// A service definition as stored: its JSON body and the kernel set it uses.
public struct ServiceRecord: Sendable, Equatable {
    public var name: String
    public var definition: String
    public var semKey: Int32?
    public var semID: Int32?
    /// "api" or "config".
    public var source: String

    public init(name: String, definition: String, semKey: Int32? = nil, semID: Int32? = nil, source: String = "api") {
        self.name = name
        self.definition = definition
        self.semKey = semKey
        self.semID = semID
        self.source = source
    }
}

/// A lease as stored. `endedAt` is nil while it is live.
public struct LeaseRecord: Sendable, Equatable {
    public var id: String
    public var service: String
    public var holder: String
    public var holderPID: Int32
    public var holderStartTime: UInt64
    public var clientPID: Int32?
    public var ttlMs: Int64?
    public var acquiredAt: String
    public var expiresAt: String?
    public var endedAt: String?
    public var endReason: String?
    /// Who took it (kind, uid and name are kept; the calling pid is in its event).
    public var owner = Principal.procrefd

    public init(
        id: String, service: String, holder: String, holderPID: Int32, holderStartTime: UInt64,
        clientPID: Int32?, ttlMs: Int64?, acquiredAt: String, expiresAt: String?
    ) {
        self.id = id
        self.service = service
        self.holder = holder
        self.holderPID = holderPID
        self.holderStartTime = holderStartTime
        self.clientPID = clientPID
        self.ttlMs = ttlMs
        self.acquiredAt = acquiredAt
        self.expiresAt = expiresAt
    }
}

extension StoreTransaction {
    /// Inserts or replaces a service definition.
    public func saveService(_ record: ServiceRecord) throws {
        let now = Timestamp.format(Date())
        try db.execute(
            sql: """
                INSERT INTO services (name, definition, source, created_at, updated_at, sem_key, sem_id)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET definition = excluded.definition, source = excluded.source,
                    updated_at = excluded.updated_at, sem_key = excluded.sem_key, sem_id = excluded.sem_id
                """,
            arguments: [record.name, record.definition, record.source, now, now, record.semKey, record.semID])
    }

    /// Forgets a service (its events stay).
    public func deleteService(name: String) throws {
        try db.execute(sql: "DELETE FROM services WHERE name = ?", arguments: [name])
    }

    /// Records the state and process of a service (a hint for re-adoption; the kernel decides).
    public func updateServiceProcess(name: String, state: String, pid: Int32?, startTime: UInt64?) throws {
        // Cached: every start and stop writes it.
        try db.cachedStatement(sql: "UPDATE services SET state = ?, pid = ?, pid_start_time = ? WHERE name = ?")
            .execute(arguments: [state, pid, startTime.map { Int64(bitPattern: $0) }, name])
    }

    public func insertLease(_ lease: LeaseRecord) throws {
        var insert = DirectStatement(try db.cachedStatement(sql: """
                INSERT INTO leases (id, service, holder, holder_pid, holder_start_time, client_pid, ttl_ms,
                    acquired_at, expires_at, owner_kind, owner_uid, owner_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """))
        insert.bind(lease.id)
        insert.bind(lease.service)
        insert.bind(lease.holder)
        insert.bind(Int64(lease.holderPID))
        insert.bind(Int64(bitPattern: lease.holderStartTime))
        insert.bind(lease.clientPID)
        insert.bind(lease.ttlMs)
        insert.bind(lease.acquiredAt)
        insert.bind(lease.expiresAt)
        insert.bind(lease.owner.kind.rawValue)
        insert.bind(lease.owner.uid.map(Int64.init))
        insert.bind(lease.owner.kind == .peer ? lease.owner.user : lease.owner.name)
        try insert.run(in: db)
    }

    public func updateLeaseExpiry(id: String, expiresAt: String) throws {
        try db.cachedStatement(sql: "UPDATE leases SET expires_at = ? WHERE id = ?").execute(arguments: [expiresAt, id])
    }

    public func endLease(id: String, reason: String) throws {
        var update = DirectStatement(try db.cachedStatement(sql: "UPDATE leases SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL"))
        update.bind(Timestamp.format(Date()))
        update.bind(reason)
        update.bind(id)
        try update.run(in: db)
    }
}

extension AuditStore {
    /// Deletes the rows of leases that ended before `cutoff`, `batchSize` rows per
    /// transaction (so the writer is never held long); returns how many. Live leases stay.
    /// Rows are read in insertion order, which is acquisition order, and the walk stops at
    /// the first lease acquired after `cutoff` (none after it can have ended before it): the
    /// work is the rows deleted plus the live ones among them, never a scan of a day's leases.
    @discardableResult
    public func pruneEndedLeases(endedBefore cutoff: Date, batchSize: Int = 1_000) throws -> Int {
        let before = Timestamp.format(cutoff)
        var total = 0
        var after: Int64 = 0
        while true {
            let rows = try read { reader in
                try Row.fetchAll(
                    reader.db, sql: "SELECT rowid, acquired_at, ended_at FROM leases WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    arguments: [after, batchSize])
            }
            guard let last = rows.last else { return total }
            after = try last[0]
            let reachedNewer = rows.contains { (($0[1] as String?) ?? "") >= before }
            let first: Int64 = try rows[0][0]
            if rows.contains(where: { (($0[2] as String?) ?? before) < before }) {
                // The batch's range: its rows that ended before the cutoff (live ones stay).
                total += try write { tx in
                    try tx.db.execute(
                        sql: "DELETE FROM leases WHERE rowid BETWEEN ? AND ? AND ended_at < ?", arguments: [first, after, before])
                    return tx.db.changesCount
                }
            }
            if reachedNewer || rows.count < batchSize { return total }
        }
    }
}

extension StoreReader {
    public func services() throws -> [ServiceRecord] {
        try Row.fetchAll(db, sql: "SELECT name, definition, sem_key, sem_id, source FROM services ORDER BY name").map {
            try ServiceRecord(name: $0["name"], definition: $0["definition"], semKey: $0["sem_key"], semID: $0["sem_id"], source: $0["source"])
        }
    }

    /// Leases not yet ended, oldest first.
    public func liveLeases() throws -> [LeaseRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM leases WHERE ended_at IS NULL ORDER BY acquired_at").map(Self.lease)
    }

    public func lease(id: String) throws -> LeaseRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE id = ?", arguments: [id]).map(Self.lease)
    }

    static func lease(_ row: Row) throws -> LeaseRecord {
        var record = try LeaseRecord(
            id: row["id"], service: row["service"], holder: row["holder"], holderPID: row["holder_pid"],
            holderStartTime: UInt64(bitPattern: row["holder_start_time"]), clientPID: row["client_pid"],
            ttlMs: row["ttl_ms"], acquiredAt: row["acquired_at"], expiresAt: row["expires_at"])
        record.endedAt = row["ended_at"]
        record.endReason = row["end_reason"]
        let kind = (row["owner_kind"] as String?).flatMap(Principal.Kind.init(rawValue:)) ?? .daemon
        let name: String? = row["owner_name"]
        record.owner = Principal(kind: kind, uid: row["owner_uid"], user: kind == .peer ? name : nil, name: kind == .peer ? nil : name ?? "procrefd")
        return record
    }
}
