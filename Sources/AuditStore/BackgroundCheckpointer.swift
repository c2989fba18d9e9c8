import Foundation
import Glibc
import GRDB
import Synchronization

/// A connection of its own that checkpoints the WAL now and then: every `intervalMs`, and
/// within `tickMs` once the WAL is over its bound, after such a pass asking the writer to
/// finish the checkpoint so the WAL rewinds (see `WALBound`).
public final class BackgroundCheckpointer: Sendable {
    private let queue: DatabaseQueue
    private let stopped = Mutex(false)
    static let tickMs = 50

    init(path: String, intervalMs: Int, walBound: WALBound) throws {
        var configuration = Configuration()
        configuration.label = "procrefd-checkpointer"
        configuration.busyMode = .timeout(1)
        queue = try DatabaseQueue(path: path, configuration: configuration)
        Thread.detachNewThread { [self] in
            var sincePass = 0
            while !stopped.withLock({ $0 }) {
                usleep(useconds_t(Self.tickMs * 1000))
                sincePass += Self.tickMs
                let overLimit = walBound.isOverLimit
                guard overLimit || sincePass >= intervalMs else { continue }
                sincePass = 0
                walBound.passBegins()
                _ = try? queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
                walBound.passEnded(overLimit: overLimit)
            }
        }
    }

    /// Stops after the current pause; a final checkpoint runs first.
    public func stop() {
        stopped.withLock { $0 = true }
        _ = try? queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
    }
}
