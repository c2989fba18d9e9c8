import FoundationEssentials
import SQLite
import Wire

/// A remembered acquire: which lease a key produced, and for which request.
public struct IdempotencyRecord: Sendable, Equatable {
    public let key: String
    public let service: String
    public let requestHash: String
    public let lease: String
    /// The kernel count the grant saw (nil: unreadable; stored as -1, the column is NOT NULL).
    public let count: Int?
    public let started: Bool

    public init(key: String, service: String, requestHash: String, lease: String, count: Int?, started: Bool) {
        self.key = key
        self.service = service
        self.requestHash = requestHash
        self.lease = lease
        self.count = count
        self.started = started
    }
}

extension StoreTransaction {
    public func saveIdempotencyKey(_ record: IdempotencyRecord) throws {
        try db.execute(
            sql: """
                INSERT OR REPLACE INTO idempotency_keys (key, service, request_hash, lease, count, started, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [record.key, record.service, record.requestHash, record.lease, record.count ?? -1, record.started,
                        Timestamp.format(Date())])
    }

    /// Forgets keys older than `before`.
    public func expireIdempotencyKeys(before: Date) throws {
        try db.execute(sql: "DELETE FROM idempotency_keys WHERE created_at < ?", arguments: [Timestamp.format(before)])
    }
}

extension StoreReader {
    private static func knownCount(_ stored: Int) -> Int? { stored >= 0 ? stored : nil }

    /// The record of `key` if it was saved at or after `notBefore`.
    public func idempotencyKey(_ key: String, notBefore: Date) throws -> IdempotencyRecord? {
        try Row.fetchOne(
            db, sql: "SELECT * FROM idempotency_keys WHERE key = ? AND created_at >= ?",
            arguments: [key, Timestamp.format(notBefore)]
        ).map {
            try IdempotencyRecord(key: $0["key"], service: $0["service"], requestHash: $0["request_hash"], lease: $0["lease"],
                              count: Self.knownCount($0["count"]), started: $0["started"])
        }
    }
}
