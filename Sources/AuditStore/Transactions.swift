import FoundationEssentials
import Glibc
import SQLite
import Synchronization

/// A write queued by `AuditStore.submit`.
public struct PendingWrite<T: Sendable>: Sendable {
    let store: AuditStore
    let pending: GroupCommitter.Pending<(T, Int64)>

    /// Waits (without blocking a thread) until the write is committed; throws if it failed.
    public func committed() async throws -> T {
        do {
            let (value, lastEventID) = try await pending.value()
            if lastEventID > 0 { store.signal.published(lastID: lastEventID) }
            return value
        } catch {
            throw AuditStore.storeError(error)
        }
    }

    /// Calls `body` with the outcome once the write's commit is over, without a waiting
    /// thread or a task: at once when it already is, else on the thread that commits it
    /// (right after that commit). For a write `committedIfIdle` left to another thread.
    public func whenCommitted(_ body: @escaping @Sendable (Result<T, Error>) -> Void) {
        let store = self.store
        pending.whenDone { outcome in
            body(outcome.map { value, lastEventID in
                if lastEventID > 0 { store.signal.published(lastID: lastEventID) }
                return value
            }.mapError { AuditStore.storeError($0) as any Error })
        }
    }

    /// Commits the write on the calling thread when no other thread is committing (its batch
    /// takes whatever else is queued); nil when one is: then await `committed()`. Never waits
    /// for another thread's commit, so an HTTP thread is not held by others' work.
    public func committedIfIdle() throws -> T? {
        do {
            guard let (value, lastEventID) = try pending.valueIfIdle() else { return nil }
            if lastEventID > 0 { store.signal.published(lastID: lastEventID) }
            return value
        } catch {
            throw AuditStore.storeError(error)
        }
    }
}

/// Write access inside a transaction.
public struct StoreTransaction {
    let db: Database
    let appended: AppendedEvents
    /// The writer's last known chain head (see `chainHead`).
    let chain: ChainHeadCache
}

/// The newest event's id and hash as the writer last appended them, so the next append
/// reads nothing to link to it. The group committer forgets it whenever a body or a commit
/// fails (whatever it appended was rolled back); only the writer's thread (the
/// committer's, one at a time) touches it.
final class ChainHeadCache: @unchecked Sendable {
    var id: Int64 = -1
    var hash: [UInt8] = []

    func forget() { id = -1 }
}

/// The newest event id a transaction appended (0: none).
final class AppendedEvents {
    var lastID: Int64 = 0
}

/// Read access on a snapshot.
public struct StoreReader {
    let db: Database
}
