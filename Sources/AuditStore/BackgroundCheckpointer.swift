import Glibc
import Posix
import SQLite
import Synchronization

/// A connection of its own that checkpoints the WAL now and then: every `intervalMs`, and
/// within `tickMs` once the WAL is over its bound, after such a pass asking the writer to
/// finish the checkpoint so the WAL rewinds (see `WALBound`).
public final class BackgroundCheckpointer: Sendable {
    private let connection: SerializedDatabase
    private let stopped = Mutex(false)
    static let tickMs = 50

    init(path: String, intervalMs: Int, walBound: WALBound) throws {
        connection = try SerializedDatabase(path: path, busyTimeoutMs: 1000)
        try DetachedThread.start(name: "procrefd-ckpt") { [self] in
            var sincePass = 0
            while !stopped.withLock({ $0 }) {
                usleep(useconds_t(Self.tickMs * 1000))
                sincePass += Self.tickMs
                let overLimit = walBound.isOverLimit
                guard overLimit || sincePass >= intervalMs else { continue }
                sincePass = 0
                walBound.passBegins()
                checkpoint()
                walBound.passEnded(overLimit: overLimit)
            }
        }
    }

    /// Stops after the current pause; a final checkpoint runs first.
    public func stop() {
        stopped.withLock { $0 = true }
        checkpoint()
    }

    private func checkpoint() {
        _ = try? connection.withDatabase { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
    }
}
