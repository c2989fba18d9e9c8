import CSQLite
import FoundationEssentials

/// A value as SQLite stores it.
public enum DatabaseValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// Column `index` of the row `statement` is on.
    init(column index: Int32, of statement: OpaquePointer) {
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER: self = .integer(sqlite3_column_int64(statement, index))
        case SQLITE_FLOAT: self = .real(sqlite3_column_double(statement, index))
        case SQLITE_TEXT:
            let count = Int(sqlite3_column_bytes(statement, index))
            let bytes = sqlite3_column_text(statement, index)
            self = .text(bytes.map { String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self) } ?? "")
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, index))
            let bytes = sqlite3_column_blob(statement, index)?.assumingMemoryBound(to: UInt8.self)
            self = .blob(bytes.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? [])
        default: self = .null
        }
    }
}

/// A Swift type stored in one SQLite column.
public protocol DatabaseValueConvertible {
    /// Binds the value to parameter `index` (from 1); returns SQLite's result code.
    func bind(to statement: OpaquePointer, at index: Int32) -> Int32
    /// The value a column holds; nil for NULL or a value of another kind.
    static func fromDatabase(_ value: DatabaseValue) -> Self?
}

/// SQLite copies a text or blob before `bind` returns.
let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

extension Int64: DatabaseValueConvertible {
    public func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_int64(statement, index, self) }
    public static func fromDatabase(_ value: DatabaseValue) -> Int64? {
        switch value {
        case let .integer(integer): return integer
        case let .real(real): return Int64(exactly: real)
        default: return nil
        }
    }
}

/// Integers narrower or wider than SQLite's 64 bits: stored as Int64, read back when they fit.
public protocol DatabaseInteger: DatabaseValueConvertible, FixedWidthInteger {}
extension DatabaseInteger {
    public func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_int64(statement, index, Int64(self)) }
    public static func fromDatabase(_ value: DatabaseValue) -> Self? { Int64.fromDatabase(value).flatMap(Self.init(exactly:)) }
}
extension Int: DatabaseInteger {}
extension Int32: DatabaseInteger {}
extension UInt32: DatabaseInteger {}

extension Bool: DatabaseValueConvertible {
    public func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_int64(statement, index, self ? 1 : 0) }
    public static func fromDatabase(_ value: DatabaseValue) -> Bool? { Int64.fromDatabase(value).map { $0 != 0 } }
}

extension Double: DatabaseValueConvertible {
    public func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { sqlite3_bind_double(statement, index, self) }
    public static func fromDatabase(_ value: DatabaseValue) -> Double? {
        switch value {
        case let .real(real): return real
        case let .integer(integer): return Double(integer)
        default: return nil
        }
    }
}

extension String: DatabaseValueConvertible {
    public func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        withCString { sqlite3_bind_text(statement, index, $0, -1, transient) }
    }
    public static func fromDatabase(_ value: DatabaseValue) -> String? {
        switch value {
        case let .text(text): return text
        case let .blob(bytes): return String(decoding: bytes, as: UTF8.self)
        case let .integer(integer): return String(integer)
        default: return nil
        }
    }
}

extension Array: DatabaseValueConvertible where Element == UInt8 {
    public func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transient) }
    }
    public static func fromDatabase(_ value: DatabaseValue) -> [UInt8]? {
        switch value {
        case let .blob(bytes): return bytes
        case let .text(text): return Array(text.utf8)
        default: return nil
        }
    }
}

extension Data: DatabaseValueConvertible {
    public func bind(to statement: OpaquePointer, at index: Int32) -> Int32 { Array(self).bind(to: statement, at: index) }
    public static func fromDatabase(_ value: DatabaseValue) -> Data? { [UInt8].fromDatabase(value).map { Data($0) } }
}

extension DatabaseValueConvertible {
    /// The first column of the first row (nil: no row, or NULL).
    public static func fetchOne(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> Self? {
        try Row.fetchOne(db, sql: sql, arguments: arguments).flatMap { Self.fromDatabase($0.values[0]) }
    }

    /// The first column of every row; a NULL is an error.
    public static func fetchAll(_ db: Database, sql: String, arguments: StatementArguments = []) throws -> [Self] {
        try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
            guard let value = Self.fromDatabase(row.values[0]) else { throw DatabaseError.missingValue(column: row.names[0], sql: sql) }
            return value
        }
    }
}
