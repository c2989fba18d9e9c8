import FoundationEssentials
import SQLite
import Wire

/// One numbered schema change from `migrations/NNNN_name.sql`.
public struct Migration: Sendable, Equatable {
    public let name: String
    public let sql: String

    /// The files of `migrations/`, embedded at build time, in order.
    public static let embedded: [Migration] = embeddedMigrations
        .map { Migration(name: $0.name.hasSuffix(".sql") ? String($0.name.dropLast(4)) : $0.name, sql: $0.text) }
        .sorted { $0.name < $1.name }
}

/// Applies pending migrations in order, each in its own transaction, recording each in
/// `schema_migrations`. A recorded migration is never applied twice.
struct MigrationRunner {
    let migrations: [Migration]

    func apply(to writer: DatabasePool) throws {
        do {
            try writer.write { db in
                try db.execute(sql: """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    TEXT PRIMARY KEY,
                        applied_at TEXT NOT NULL
                    )
                    """)
            }
        } catch {
            throw AuditStoreError.migration(name: "schema_migrations", message: AuditStore.message(error))
        }
        for migration in migrations {
            do {
                try writer.write { db in
                    let done = try Bool.fetchOne(
                        db, sql: "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?)",
                        arguments: [migration.name]) ?? false
                    guard !done else { return }
                    try db.execute(sql: migration.sql)
                    try db.execute(
                        sql: "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                        arguments: [migration.name, Timestamp.format(Date())])
                }
            } catch {
                throw AuditStoreError.migration(name: migration.name, message: AuditStore.message(error))
            }
        }
    }
}

extension StoreReader {
    /// Names of the applied migrations, in order.
    public func appliedMigrations() throws -> [String] {
        try String.fetchAll(db, sql: "SELECT version FROM schema_migrations ORDER BY version")
    }
}
