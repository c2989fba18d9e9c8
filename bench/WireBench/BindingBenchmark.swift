import AuditStore
import Foundation
import GRDB

/// The event row's INSERT bound by `DirectStatement` and by GRDB's `execute(arguments:)`,
/// each on a database with the audit schema (made by `AuditStore`), so the stand-in is kept
/// only while it measurably wins.
enum BindingBenchmark {
    /// Nanoseconds per insert for each way, the median of `rounds` transactions of `rows`
    /// inserts each (the two ways alternate, each on its own scratch database in
    /// `directory`, which the caller removes).
    static func nanosecondsPerInsert(rows: Int, rounds: Int, directory: String) throws -> (direct: Double, grdb: Double) {
        let direct = try database(directory + "/direct.db")
        let grdb = try database(directory + "/grdb.db")
        var directRounds: [Double] = []
        var grdbRounds: [Double] = []
        for _ in 0..<rounds {
            directRounds.append(try time(rows, on: direct) { db in
                var insert = DirectStatement(try db.cachedStatement(sql: sql))
                insert.bind(time)
                insert.bind(EventKind.leaseAcquired.rawValue)
                insert.bind("db")
                insert.bind("l_00066124800d40a1b2c3d4e5")
                insert.bind(Int32(4_242))
                insert.bind("tcp:127.0.0.1:38280")
                insert.bind(detail)
                try insert.run(in: db)
            })
            grdbRounds.append(try time(rows, on: grdb) { db in
                try db.cachedStatement(sql: sql).execute(arguments: [
                    time, EventKind.leaseAcquired.rawValue, "db", "l_00066124800d40a1b2c3d4e5", Int32(4_242),
                    "tcp:127.0.0.1:38280", detail,
                ])
            })
        }
        return (directRounds.sorted()[rounds / 2], grdbRounds.sorted()[rounds / 2])
    }

    private static let sql = "INSERT INTO events (time, kind, service, lease, pid, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?)"
    private static let time = "2026-11-26T00:30:29.512Z"
    private static let detail = #"{"count":2,"started":false,"ttl_ms":60000}"#

    /// A database with the audit schema (`AuditStore` applies the migrations), opened with GRDB.
    private static func database(_ path: String) throws -> DatabaseQueue {
        _ = try AuditStore(path: path)
        return try DatabaseQueue(path: path)
    }

    private static func time(_ rows: Int, on database: DatabaseQueue, _ insert: (Database) throws -> Void) throws -> Double {
        try database.write { db in
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<rows { try insert(db) }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / Double(rows)
        }
    }
}
