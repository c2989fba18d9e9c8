import CSQLite

/// A prepared statement. Belongs to its connection: use it only under that connection's lock.
public final class Statement {
    /// The `sqlite3_stmt` handle, for binding values in place (see AuditStore's DirectStatement).
    public let sqliteStatement: OpaquePointer
    let connection: OpaquePointer
    public let sql: String

    init(handle: OpaquePointer, connection: OpaquePointer, sql: String) {
        sqliteStatement = handle
        self.connection = connection
        self.sql = sql
    }

    convenience init(connection: OpaquePointer, sql: String, persistent: Bool) throws {
        var handle: OpaquePointer?
        let flags = persistent ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0
        let code = sqlite3_prepare_v3(connection, sql, -1, flags, &handle, nil)
        guard code == SQLITE_OK, let handle else { throw DatabaseError(code: code, connection: connection, sql: sql) }
        self.init(handle: handle, connection: connection, sql: sql)
    }

    deinit { sqlite3_finalize(sqliteStatement) }

    /// Binds `arguments` and steps the statement to its end.
    public func execute(arguments: StatementArguments = []) throws {
        try forEachRow(arguments: arguments) { _ in true }
    }

    /// Binds `arguments`, then calls `body` on each row while it returns true; the statement
    /// is reset and its bindings cleared afterwards, whatever happens.
    func forEachRow(arguments: StatementArguments, _ body: (OpaquePointer) throws -> Bool) throws {
        defer {
            sqlite3_reset(sqliteStatement)
            sqlite3_clear_bindings(sqliteStatement)
        }
        try bind(arguments)
        while true {
            switch sqlite3_step(sqliteStatement) {
            case SQLITE_DONE: return
            case SQLITE_ROW: if try !body(sqliteStatement) { return }
            case let code: throw DatabaseError(code: code, connection: connection, sql: sql)
            }
        }
    }

    private func bind(_ arguments: StatementArguments) throws {
        let expected = Int(sqlite3_bind_parameter_count(sqliteStatement))
        guard arguments.values.count == expected else {
            throw DatabaseError(resultCode: SQLITE_RANGE, message: "\(expected) parameters, \(arguments.values.count) arguments", sql: sql)
        }
        for (offset, value) in arguments.values.enumerated() {
            let index = Int32(offset + 1)
            let code = value?.bind(to: sqliteStatement, at: index) ?? sqlite3_bind_null(sqliteStatement, index)
            guard code == SQLITE_OK else { throw DatabaseError(code: code, connection: connection, sql: sql) }
        }
    }
}

/// The values of a statement's parameters, in order (nil: NULL).
public struct StatementArguments: ExpressibleByArrayLiteral {
    public var values: [(any DatabaseValueConvertible)?]

    public init(_ values: [(any DatabaseValueConvertible)?]) { self.values = values }
    public init(arrayLiteral elements: (any DatabaseValueConvertible)?...) { values = elements }

    public static func += (lhs: inout StatementArguments, rhs: StatementArguments) { lhs.values += rhs.values }
}
