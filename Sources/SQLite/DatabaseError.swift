import CSQLite

/// An error SQLite returned: its result code and message, and the statement that failed.
public struct DatabaseError: Error, CustomStringConvertible, Sendable {
    /// The extended result code (`SQLITE_IOERR_WRITE`, …): connections report extended codes.
    public let extendedResultCode: Int32
    public let message: String
    public let sql: String?

    /// The primary result code (`SQLITE_IOERR`, `SQLITE_FULL`, …).
    public var resultCode: Int32 { extendedResultCode & 0xFF }

    public init(resultCode: Int32, message: String, sql: String? = nil) {
        extendedResultCode = resultCode
        self.message = message
        self.sql = sql
    }

    /// The connection's last error (or, without a connection, the code's generic text).
    init(code: Int32, connection: OpaquePointer?, sql: String?) {
        let text = connection.flatMap { sqlite3_errmsg($0) } ?? sqlite3_errstr(code)
        self.init(resultCode: code, message: text.map { String(cString: $0) } ?? "SQLite error \(code)", sql: sql)
    }

    /// A column that should hold a value held NULL or none at all (a damaged database).
    static func missingValue(column: String, sql: String?) -> DatabaseError {
        DatabaseError(resultCode: SQLITE_MISMATCH, message: "column \(column) holds no value of the expected type", sql: sql)
    }

    public var description: String {
        "SQLite error \(extendedResultCode): \(message)" + (sql.map { " (while running `\($0)`)" } ?? "")
    }
}
