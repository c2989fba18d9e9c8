import CSQLite
import Foundation
import SQLite
import Testing

/// The SQLite layer on real database files: statements, rows, errors, transactions and the
/// WAL pool's snapshots.
@Suite("SQLite layer")
struct SQLiteTests {
    /// A pool on a new file in a temp dir, with a table `t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT)`.
    func withPool(_ body: (DatabasePool) throws -> Void) throws {
        let dir = NSTemporaryDirectory() + "procrefd-sqlite-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pool = try DatabasePool(path: "\(dir)/test.db")
        try pool.write { db in
            try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, note TEXT)")
        }
        try body(pool)
    }

    @Test("execute runs several statements, its arguments filling their parameters in order")
    func severalStatements() throws {
        try withPool { pool in
            try pool.write { db in
                try db.execute(sql: "INSERT INTO t (name) VALUES (?); INSERT INTO t (name, note) VALUES (?, ?);", arguments: ["a", "b", "bee"])
            }
            let rows = try pool.read { try Row.fetchAll($0, sql: "SELECT name, note FROM t ORDER BY id") }
            #expect(try rows.map { try $0["name"] as String } == ["a", "b"])
            #expect(rows.map { $0["note"] as String? } == [nil, "bee"])
        }
    }

    @Test("too few or too many arguments are an error (SQLITE_RANGE), and nothing is written")
    func argumentCount() throws {
        try withPool { pool in
            for arguments: StatementArguments in [[], ["a", "b"]] {
                #expect {
                    try pool.write { db in try db.execute(sql: "INSERT INTO t (name) VALUES (?)", arguments: arguments) }
                } throws: { ($0 as? DatabaseError)?.resultCode == SQLITE_RANGE }
            }
            let count = try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") }
            #expect(count == 0)
        }
    }

    @Test("a constraint violation carries the primary and the extended result code and SQLite's message")
    func constraintError() throws {
        try withPool { pool in
            try pool.write { try $0.execute(sql: "INSERT INTO t (name) VALUES ('a')") }
            #expect {
                try pool.write { try $0.execute(sql: "INSERT INTO t (name) VALUES ('a')") }
            } throws: { error in
                guard let error = error as? DatabaseError else { return false }
                // SQLITE_CONSTRAINT_UNIQUE is a macro expression Swift does not import.
                return error.resultCode == SQLITE_CONSTRAINT && error.extendedResultCode == SQLITE_CONSTRAINT | (8 << 8)
                    && error.message.contains("UNIQUE")
            }
        }
    }

    @Test("a NULL where a value must be throws; read as optional it is nil; a missing column too")
    func nullValues() throws {
        try withPool { pool in
            try pool.write { try $0.execute(sql: "INSERT INTO t (name) VALUES ('a')") }
            let row = try #require(try pool.read { try Row.fetchOne($0, sql: "SELECT name, note FROM t") })
            #expect(throws: DatabaseError.self) { let _: String = try row["note"] }
            #expect(row["note"] as String? == nil)
            #expect(row["nope"] as String? == nil)
            #expect(try row[0] as String == "a")
            #expect(row[5] as String? == nil)
        }
    }

    @Test("values round-trip: integers at their limits, doubles, text, blobs, booleans; a narrower integer that does not fit reads as nil")
    func roundTrips() throws {
        try withPool { pool in
            try pool.write { db in
                try db.execute(sql: "CREATE TABLE v (i INTEGER, r REAL, s TEXT, b BLOB, f INTEGER)")
                try db.execute(sql: "INSERT INTO v VALUES (?, ?, ?, ?, ?)", arguments: [Int64.max, 1.25, "ünï ✓ 🚀", [UInt8]([0, 1, 255]), true])
                try db.execute(sql: "INSERT INTO v VALUES (?, ?, ?, ?, ?)", arguments: [Int64.min, -0.5, "", Data([7]), false])
            }
            let rows = try pool.read { try Row.fetchAll($0, sql: "SELECT * FROM v ORDER BY rowid") }
            #expect(rows.map { $0["i"] as Int64? } == [Int64.max, Int64.min])
            #expect(rows.map { $0["r"] as Double? } == [1.25, -0.5])
            #expect(rows.map { $0["s"] as String? } == ["ünï ✓ 🚀", ""])
            #expect(rows.map { $0["b"] as [UInt8]? } == [[0, 1, 255], [7]])
            #expect(rows.map { $0["f"] as Bool? } == [true, false])
            #expect(rows[0]["i"] as Int32? == nil, "Int64.max does not fit an Int32")
            #expect(rows[0]["i"] as UInt32? == nil)
        }
    }

    @Test("write rolls back when its body throws: nothing of it stays")
    func rollback() throws {
        struct Abandon: Error {}
        try withPool { pool in
            #expect(throws: Abandon.self) {
                try pool.write { db in
                    try db.execute(sql: "INSERT INTO t (name) VALUES ('gone')")
                    throw Abandon()
                }
            }
            let count = try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") }
            #expect(count == 0)
            let open = try pool.writeWithoutTransaction { $0.isInsideTransaction }
            #expect(open == false)
        }
    }

    @Test("a read sees one snapshot while the writer commits; the next read sees the commit")
    func snapshots() throws {
        try withPool { pool in
            try pool.write { try $0.execute(sql: "INSERT INTO t (name) VALUES ('first')") }
            let (before, during) = try pool.read { db -> (Int?, Int?) in
                let before = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t")
                try pool.write { try $0.execute(sql: "INSERT INTO t (name) VALUES ('second')") }
                return (before, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t"))
            }
            #expect(before == 1)
            #expect(during == 1, "the read's snapshot does not move")
            #expect(try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") } == 2)
        }
    }

    @Test("a cached statement is prepared once and runs again with new arguments; fetchOne stops at the first row")
    func cachedStatements() throws {
        try withPool { pool in
            try pool.write { db in
                for name in ["a", "b", "c"] { try db.cachedStatement(sql: "INSERT INTO t (name) VALUES (?)").execute(arguments: [name]) }
                #expect(try db.cachedStatement(sql: "INSERT INTO t (name) VALUES (?)") === db.cachedStatement(sql: "INSERT INTO t (name) VALUES (?)"))
                #expect(db.lastInsertedRowID == 3)
            }
            let first = try pool.read { try Row.fetchOne($0.cachedStatement(sql: "SELECT name FROM t ORDER BY id")) }
            #expect(first?["name"] as String? == "a")
            #expect(try pool.read { try String.fetchAll($0, sql: "SELECT name FROM t ORDER BY id DESC") } == ["c", "b", "a"])
        }
    }
}
