import CSQLite

/// One SQLite connection, with a cache of prepared statements. Used by one thread at a
/// time: its owner's lock (`DatabasePool`, `SerializedDatabase`) hands it from thread to
/// thread, hence `@unchecked Sendable`.
public final class Database: @unchecked Sendable {
    /// The `sqlite3` handle, for C API calls this type does not wrap (a WAL hook).
    public let sqliteConnection: OpaquePointer
    private var statementCache: [String: Statement] = [:]

    /// Opens (creating unless `readOnly`) the database file at `path`. A busy database is
    /// retried for up to `busyTimeoutMs` before a statement fails with SQLITE_BUSY.
    public init(path: String, readOnly: Bool = false, busyTimeoutMs: Int32 = 5000) throws {
        var handle: OpaquePointer?
        // NOMUTEX: each connection is used by one thread at a time (its owner's lock), so
        // SQLite's own per-call mutex is not needed.
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let code = sqlite3_open_v2(path, &handle, flags, nil)
        guard code == SQLITE_OK, let handle else {
            let error = DatabaseError(code: code, connection: handle, sql: nil)
            sqlite3_close_v2(handle)
            throw error
        }
        sqliteConnection = handle
        sqlite3_extended_result_codes(handle, 1)
        sqlite3_busy_timeout(handle, busyTimeoutMs)
    }

    deinit {
        statementCache.removeAll()
        // _v2: should a statement still be alive, the connection closes once it is finalized.
        sqlite3_close_v2(sqliteConnection)
    }

    /// Runs `sql`, which may hold several statements (a migration file). `arguments` fill
    /// the statements' parameters in order.
    public func execute(sql: String, arguments: StatementArguments = []) throws {
        var remaining = arguments.values[...]
        try sql.withCString { start in
            var next: UnsafePointer<CChar>? = start
            while let current = next, current.pointee != 0 {
                var handle: OpaquePointer?
                let code = sqlite3_prepare_v2(sqliteConnection, current, -1, &handle, &next)
                guard code == SQLITE_OK else { throw DatabaseError(code: code, connection: sqliteConnection, sql: sql) }
                guard let handle else { continue }  // whitespace or a comment
                let statement = Statement(handle: handle, connection: sqliteConnection, sql: sql)
                let count = Int(sqlite3_bind_parameter_count(handle))
                guard count <= remaining.count else {
                    throw DatabaseError(resultCode: SQLITE_RANGE, message: "\(count) parameters, \(remaining.count) arguments left", sql: sql)
                }
                try statement.execute(arguments: StatementArguments(Array(remaining.prefix(count))))
                remaining = remaining.dropFirst(count)
            }
        }
        guard remaining.isEmpty else {
            throw DatabaseError(resultCode: SQLITE_RANGE, message: "\(remaining.count) arguments too many", sql: sql)
        }
    }

    /// The prepared statement for `sql`, compiled on first use and kept for the
    /// connection's life (for the statements run again and again).
    public func cachedStatement(sql: String) throws -> Statement {
        if let statement = statementCache[sql] { return statement }
        let statement = try Statement(connection: sqliteConnection, sql: sql, persistent: true)
        statementCache[sql] = statement
        return statement
    }

    /// A statement compiled for one use.
    public func makeStatement(sql: String) throws -> Statement {
        try Statement(connection: sqliteConnection, sql: sql, persistent: false)
    }

    /// Runs `body` between `begin` (`BEGIN IMMEDIATE`, `BEGIN DEFERRED`) and COMMIT; a
    /// throw rolls the transaction back (unless SQLite already did) and is rethrown.
    public func inTransaction<T>(begin: String, _ body: () throws -> T) throws -> T {
        try cachedStatement(sql: begin).execute()
        do {
            let value = try body()
            try cachedStatement(sql: "COMMIT").execute()
            return value
        } catch {
            if isInsideTransaction { try? execute(sql: "ROLLBACK") }
            throw error
        }
    }

    /// The rowid of the last row inserted on this connection.
    public var lastInsertedRowID: Int64 { sqlite3_last_insert_rowid(sqliteConnection) }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    public var changesCount: Int { Int(sqlite3_changes(sqliteConnection)) }

    /// Whether a transaction is open (SQLite rolls one back on its own after some errors).
    public var isInsideTransaction: Bool { sqlite3_get_autocommit(sqliteConnection) == 0 }
}
