import FoundationEssentials
import SQLite
import Wire

/// One run of the daemon, as recorded at start-up.
public struct DaemonRun: Sendable, Equatable {
    public let id: Int64
    public let pid: Int32
    public let bootID: String
    public let startedAt: String
    public let stoppedAt: String?
    public let stopMode: String?
}

extension StoreTransaction {
    /// Records the start of a run and returns its id.
    public func beginRun(pid: Int32, bootID: String) throws -> Int64 {
        try db.execute(
            sql: "INSERT INTO daemon_runs (pid, boot_id, started_at) VALUES (?, ?, ?)",
            arguments: [pid, bootID, Timestamp.format(Date())])
        return db.lastInsertedRowID
    }

    public func endRun(id: Int64, mode: String) throws {
        try db.execute(
            sql: "UPDATE daemon_runs SET stopped_at = ?, stop_mode = ? WHERE id = ?",
            arguments: [Timestamp.format(Date()), mode, id])
    }
}

extension StoreReader {
    /// The most recent run, if any.
    public func lastRun() throws -> DaemonRun? {
        try Row.fetchOne(db, sql: "SELECT * FROM daemon_runs ORDER BY id DESC LIMIT 1").map {
            try DaemonRun(id: $0["id"], pid: $0["pid"], bootID: $0["boot_id"], startedAt: $0["started_at"],
                      stoppedAt: $0["stopped_at"], stopMode: $0["stop_mode"])
        }
    }

    /// Stored process hints of a service: state, pid, start time.
    public func serviceProcess(name: String) throws -> (state: String, pid: Int32?, startTime: UInt64?)? {
        try Row.fetchOne(db, sql: "SELECT state, pid, pid_start_time FROM services WHERE name = ?", arguments: [name]).map {
            let start: Int64? = $0["pid_start_time"]
            return try ($0["state"], $0["pid"], start.map { UInt64(bitPattern: $0) })
        }
    }
}
