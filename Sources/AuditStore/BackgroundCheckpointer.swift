import Foundation
import Glibc
import GRDB
import Synchronization

/// A connection of its own that checkpoints the WAL now and then.
public final class BackgroundCheckpointer: Sendable {
    private let queue: DatabaseQueue
    private let stopped = Mutex(false)

    init(path: String, intervalMs: Int) throws {
        var configuration = Configuration()
        configuration.label = "procrefd-checkpointer"
        configuration.busyMode = .timeout(1)
        queue = try DatabaseQueue(path: path, configuration: configuration)
        Thread.detachNewThread { [self] in
            while !stopped.withLock({ $0 }) {
                usleep(useconds_t(intervalMs * 1000))
                _ = try? queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
            }
        }
    }

    /// Stops after the current pause; a final checkpoint runs first.
    public func stop() {
        stopped.withLock { $0 = true }
        _ = try? queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
    }
}
