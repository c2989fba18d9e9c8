import AuditStore
import Daemon
import Logging
import Synchronization

/// Keeps the audit log whole when the disk fills. On the first commit that fails for want of
/// storage, the ballast is deleted and `audit.storage_full` queued (as a record that must
/// not be lost, like the lease ends and transitions that wait with it). Every second while
/// records wait, it tries them again; once all are committed it records
/// `audit.storage_recovered` and makes the ballast again when there is room.
final class StorageWatch: Sendable {
    static let retryEveryMs = 1_000

    private let store: AuditStore
    private let ballast: Ballast
    private let logger: Logger
    /// Between the first failure and the moment nothing waits any more.
    private let full = Atomic<Bool>(false)
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(store: AuditStore, ballast: Ballast, logger: Logger) {
        self.store = store
        self.ballast = ballast
        self.logger = logger
        do { try ballast.ensure() } catch { logger.warning("no ballast at \(ballast.path) (\(ballast.bytes) bytes): \(error)") }
        store.onStorageFailure { [self] in storageFailed() }
        task.withLock {
            $0 = Task.detached { [self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(Self.retryEveryMs))
                    retry()
                }
            }
        }
    }

    func cancel() { task.withLock { $0?.cancel() } }

    /// On the committing thread: quick, never waits.
    private func storageFailed() {
        guard !full.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let freed = ballast.release()
        logger.critical("the audit store cannot write (disk full?): records wait in memory, new leases are refused\(freed ? "; ballast of \(ballast.bytes) bytes freed" : "")")
        _ = store.submitRecord { [ballast] tx in
            try tx.append(NewEvent(.auditStorageFull, detail: ["ballast_freed": .bool(freed), "ballast_bytes": .int(Int64(ballast.bytes))]))
        }
    }

    private func retry() {
        let waiting = store.backlogCount
        if waiting > 0 {
            do { try store.retryBacklog() } catch { return }
        }
        guard full.load(ordering: .acquiring), store.backlogCount == 0 else { return }
        full.store(false, ordering: .releasing)
        logger.notice("the audit store writes again: every waiting record is committed")
        _ = try? store.append(NewEvent(.auditStorageRecovered, detail: ["recorded": .int(Int64(waiting))]))
        do { try ballast.ensure() } catch { logger.warning("ballast not made again yet: \(error)") }
    }
}
