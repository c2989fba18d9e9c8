import CSQLite

/// One row of a query's result, read whole when stepped to.
public struct Row {
    /// The result's column names, shared by its rows.
    let names: [String]
    public let values: [DatabaseValue]
    let sql: String

    /// The value of column `name`; nil when it is NULL, of another kind, or not in the row.
    public subscript<Value: DatabaseValueConvertible>(_ name: String) -> Value? {
        names.firstIndex(of: name).flatMap { Value.fromDatabase(values[$0]) }
    }

    /// The value of a column that must hold one (NOT NULL): a NULL throws, never traps.
    public subscript<Value: DatabaseValueConvertible>(_ name: String) -> Value {
        get throws {
            guard let value: Value = self[name] else { throw DatabaseError.missingValue(column: name, sql: sql) }
            return value
        }
    }

    /// The value of column `index` (from 0); nil when it is NULL, of another kind, or not in the row.
    public subscript<Value: DatabaseValueConvertible>(_ index: Int) -> Value? {
        values.indices.contains(index) ? Value.fromDatabase(values[index]) : nil
    }

    /// The value of column `index`, which must hold one.
    public subscript<Value: DatabaseValueConvertible>(_ index: Int) -> Value {
        get throws {
            guard let value: Value = self[index] else { throw DatabaseError.missingValue(column: "#\(index)", sql: sql) }
            return value
        }
    }

    /// Every row `statement` returns for `arguments`.
    public static func fetchAll(_ statement: Statement, arguments: StatementArguments = []) throws -> [Row] {
        try fetch(statement, arguments: arguments, limit: .max)
    }

    /// The first row `statement` returns for `arguments`, if any.
    public static func fetchOne(_ statement: Statement, arguments: StatementArguments = []) throws -> Row? {
        try fetch(statement, arguments: arguments, limit: 1).first
    }

    private static func fetch(_ statement: Statement, arguments: StatementArguments, limit: Int) throws -> [Row] {
        var rows: [Row] = []
        var names: [String]?
        try statement.forEachRow(arguments: arguments) { handle in
            let columns = sqlite3_column_count(handle)
            let rowNames = names ?? (0..<columns).map { String(cString: sqlite3_column_name(handle, $0)) }
            names = rowNames
            rows.append(Row(names: rowNames, values: (0..<columns).map { DatabaseValue(column: $0, of: handle) }, sql: statement.sql))
            return rows.count < limit
        }
        return rows
    }

    public static func fetchAll(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> [Row] {
        try fetchAll(db.makeStatement(sql: sql), arguments: arguments)
    }

    public static func fetchOne(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> Row? {
        try fetchOne(db.makeStatement(sql: sql), arguments: arguments)
    }
}
