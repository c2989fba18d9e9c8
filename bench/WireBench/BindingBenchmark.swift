import AuditStore
import Foundation
import SQLite

/// The event row's INSERT bound by `DirectStatement` and by `execute(arguments:)`,
/// each on a database with the audit schema (made by `AuditStore`), so the stand-in is kept
/// only while it measurably wins.
enum BindingBenchmark {
    /// Nanoseconds per insert for each way, the median of `rounds` transactions of `rows`
    /// inserts each (the two ways alternate, each on its own scratch database in
    /// `directory`, which the caller removes).
    static func nanosecondsPerInsert(rows: Int, rounds: Int, directory: String) throws -> (direct: Double, arguments: Double) {
        let direct = try database(directory + "/direct.db")
        let boxed = try database(directory + "/arguments.db")
        var directRounds: [Double] = []
        var argumentRounds: [Double] = []
        for _ in 0..<rounds {
            directRounds.append(try time(rows, on: direct) { db in
                var insert = DirectStatement(try db.cachedStatement(sql: Self.sql))
                insert.bind(Self.time)
                insert.bind(EventKind.leaseAcquired.rawValue)
                insert.bind("db")
                insert.bind("l_00066124800d40a1b2c3d4e5")
                insert.bind(Int32(4_242))
                insert.bind("tcp:127.0.0.1:38280")
                insert.bind(Self.detail)
                try insert.run(in: db)
            })
            argumentRounds.append(try time(rows, on: boxed) { db in
                try db.cachedStatement(sql: Self.sql).execute(arguments: [
                    Self.time, EventKind.leaseAcquired.rawValue, "db", "l_00066124800d40a1b2c3d4e5", Int32(4_242),
                    "tcp:127.0.0.1:38280", Self.detail,
                ])
            })
        }
        return (directRounds.sorted()[rounds / 2], argumentRounds.sorted()[rounds / 2])
    }

    private static let sql = "INSERT INTO events (time, kind, service, lease, pid, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?)"
    private static let time = "2026-11-26T00:30:29.512Z"
    private static let detail = #"{"count":2,"started":false,"ttl_ms":60000}"#

    /// A database with the audit schema (`AuditStore` applies the migrations), opened again.
    private static func database(_ path: String) throws -> DatabasePool {
        _ = try AuditStore(path: path)
        return try DatabasePool(path: path)
    }

    private static func time(_ rows: Int, on database: DatabasePool, _ insert: (Database) throws -> Void) throws -> Double {
        try database.write { db in
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<rows { try insert(db) }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / Double(rows)
        }
    }
}
