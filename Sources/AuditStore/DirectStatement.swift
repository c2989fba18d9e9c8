import CSQLite
import SQLite

/// One run of a cached statement, bound and stepped value by value, for the statements every
/// lease commit runs (its row and its event): `execute(arguments:)` boxes each argument
/// into an existential array first; here each value is bound where it is (SQLite copies
/// it). `bench/WireBench` times both ways; this one stays only while it wins there.
///
/// Only for writes inside a transaction (the group committer's): a statement is refused
/// once SQLite rolled that transaction back on its own (an I/O error, a full disk), so a
/// batch never goes on in autocommit mode. The connection's cache keeps the statement.
public struct DirectStatement: ~Copyable {
    private let statement: Statement
    private let handle: OpaquePointer
    private var index: Int32 = 0

    public init(_ statement: Statement) {
        self.statement = statement
        handle = statement.sqliteStatement
    }

    /// Binds the next parameter.
    public mutating func bind(_ text: String) {
        index += 1
        // A native Swift string is stored NUL-terminated: no copy before SQLite's own.
        _ = text.bind(to: handle, at: index)
    }

    public mutating func bind(_ text: String?) {
        guard let text else { return bindNull() }
        bind(text)
    }

    public mutating func bind(_ value: Int64) {
        index += 1
        _ = value.bind(to: handle, at: index)
    }

    public mutating func bind(_ value: Int64?) {
        guard let value else { return bindNull() }
        bind(value)
    }

    public mutating func bind(_ value: Int32?) { bind(value.map(Int64.init)) }

    public mutating func bind(bytes: [UInt8]) {
        index += 1
        _ = bytes.bind(to: handle, at: index)
    }

    private mutating func bindNull() {
        index += 1
        sqlite3_bind_null(handle, index)
    }

    /// Steps the statement to its end, then resets it and clears its bindings (a failed
    /// step too). Throws `DatabaseError`, as `execute` would.
    public consuming func run(in db: Database) throws {
        defer {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
        }
        let connection = db.sqliteConnection
        guard sqlite3_get_autocommit(connection) == 0 else {
            throw DatabaseError(resultCode: SQLITE_ABORT, message: "Transaction was aborted", sql: statement.sql)
        }
        while true {
            switch sqlite3_step(handle) {
            case SQLITE_DONE: return
            case SQLITE_ROW: continue
            case let code:
                throw DatabaseError(resultCode: code, message: String(cString: sqlite3_errmsg(connection)), sql: statement.sql)
            }
        }
    }

    /// Steps a statement that returns one integer (or none: nil), without reading a whole
    /// row, then resets it.
    consuming func readInt64() throws -> Int64? {
        defer {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
        }
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return sqlite3_column_type(handle, 0) == SQLITE_NULL ? nil : sqlite3_column_int64(handle, 0)
        case SQLITE_DONE: return nil
        case let code: throw DatabaseError(resultCode: code, message: "reading", sql: statement.sql)
        }
    }
}
