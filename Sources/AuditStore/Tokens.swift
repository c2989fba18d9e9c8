import Crypto
import FoundationEssentials
import SQLite
import Wire

/// A named token: who holds it is `token:NAME` in the audit log.
public struct TokenRecord: Sendable, Equatable {
    public var name: String
    /// reader | leaser | operator | admin.
    public var role: String
    /// A leaser's services.
    public var services: [String]
    /// SHA-256 of the secret.
    public var hash: [UInt8]
    public var createdAt: String
    public var createdBy: String
    public var revokedAt: String?

    public init(name: String, role: String, services: [String], hash: [UInt8], createdAt: String, createdBy: String, revokedAt: String? = nil) {
        (self.name, self.role, self.services, self.hash) = (name, role, services, hash)
        (self.createdAt, self.createdBy, self.revokedAt) = (createdAt, createdBy, revokedAt)
    }

    /// The hash a presented secret must have.
    public static func hash(ofSecret secret: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: secret)) }
}

extension StoreTransaction {
    /// Stores a new token; throws when the name was ever used.
    public func insertToken(_ token: TokenRecord) throws {
        let services = String(decoding: try JSONEncoder().encode(token.services), as: UTF8.self)
        try db.execute(
            sql: "INSERT INTO tokens (name, role, services, hash, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [token.name, token.role, services, Data(token.hash), token.createdAt, token.createdBy])
    }

    /// Marks the token revoked; false when there is no live token of that name.
    public func revokeToken(name: String, at time: String) throws -> Bool {
        try db.execute(sql: "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", arguments: [time, name])
        return db.changesCount == 1
    }
}

extension StoreReader {
    /// Every token, revoked ones included, by name.
    public func tokens() throws -> [TokenRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM tokens ORDER BY name").map { row in
            let services = (try? JSONDecoder().decode([String].self, from: Data((row["services"] as String).utf8))) ?? []
            return try TokenRecord(
                name: row["name"], role: row["role"], services: services, hash: Array(row["hash"] as Data), createdAt: row["created_at"],
                createdBy: row["created_by"], revokedAt: row["revoked_at"])
        }
    }
}
