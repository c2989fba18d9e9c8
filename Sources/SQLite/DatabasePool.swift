import CSQLite
import Synchronization

/// A database in WAL mode: one writer connection, and reader connections that read
/// snapshots while it writes (opened on demand, kept for reuse).
public final class DatabasePool: Sendable {
    private let path: String
    private let busyTimeoutMs: Int32
    private let writer: Mutex<Database>
    /// Idle reader connections; at most `idleReaderLimit` are kept.
    private let idleReaders = Mutex<[Database]>([])
    static let idleReaderLimit = 8

    /// Opens the writer (creating the file unless `readOnly`), runs `prepareWriter` on it
    /// first (pragmas that must precede the first write, such as page_size), then switches
    /// the file to WAL.
    public init(path: String, readOnly: Bool = false, busyTimeoutMs: Int32 = 5000, prepareWriter: (Database) throws -> Void = { _ in }) throws {
        let database = try Database(path: path, readOnly: readOnly, busyTimeoutMs: busyTimeoutMs)
        try prepareWriter(database)
        if !readOnly { try database.execute(sql: "PRAGMA journal_mode = WAL") }
        writer = Mutex(database)
        self.path = path
        self.busyTimeoutMs = busyTimeoutMs
    }

    /// Runs `body` on the writer connection, outside any transaction, one caller at a time.
    public func writeWithoutTransaction<T>(_ body: (Database) throws -> T) throws -> T {
        try writer.withLock { database in try body(database) }
    }

    /// Runs `body` on the writer connection in a transaction (BEGIN IMMEDIATE), committed
    /// when it returns and rolled back when it throws.
    public func write<T>(_ body: (Database) throws -> T) throws -> T {
        try writeWithoutTransaction { database in try database.inTransaction(begin: "BEGIN IMMEDIATE") { try body(database) } }
    }

    /// Runs `body` on a reader connection inside a read transaction: every statement it
    /// runs sees the same snapshot, while writes go on.
    public func read<T>(_ body: (Database) throws -> T) throws -> T {
        let database = try idleReaders.withLock { $0.popLast() } ?? Database(path: path, readOnly: true, busyTimeoutMs: busyTimeoutMs)
        defer {
            idleReaders.withLock { idle in
                if idle.count < Self.idleReaderLimit { idle.append(database) }
            }
        }
        return try database.inTransaction(begin: "BEGIN DEFERRED") { try body(database) }
    }
}

/// One connection used by one thread at a time (a background checkpointer's).
public final class SerializedDatabase: Sendable {
    private let database: Mutex<Database>

    public init(path: String, busyTimeoutMs: Int32) throws {
        database = Mutex(try Database(path: path, busyTimeoutMs: busyTimeoutMs))
    }

    public func withDatabase<T>(_ body: (Database) throws -> T) throws -> T {
        try database.withLock { database in try body(database) }
    }
}
