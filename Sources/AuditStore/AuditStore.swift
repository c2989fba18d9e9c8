import CWALFrames
import FoundationEssentials
import Glibc
import SQLite
import Synchronization

/// How hard a commit waits for the disk (SQLite `synchronous` under WAL).
public enum Durability: String, Sendable, Codable, CaseIterable {
    /// Survives a crash of procrefd; the last commits may be lost on power loss. ~40k commits/s here.
    case normal
    /// Every commit is on disk before it returns. ~2.6k commits/s here.
    case full
}

/// Errors of the store, carrying SQLite's own message.
public enum AuditStoreError: Error, CustomStringConvertible, Sendable {
    case open(path: String, message: String)
    case migration(name: String, message: String)
    case database(String)

    public var description: String {
        switch self {
        case let .open(path, message): return "cannot open database \(path): \(message)"
        case let .migration(name, message): return "migration \(name) failed: \(message)"
        case let .database(message): return "database error: \(message)"
        }
    }
}

/// procrefd's SQLite file: migrations, the event log, and the service and lease tables.
/// A state change and the event reporting it are written in one transaction.
public final class AuditStore: Sendable {
    let pool: DatabasePool
    public let path: String
    /// Wakes long-polls and streams when events are committed.
    public let signal: EventSignal
    private let committer: GroupCommitter
    /// The chain head the writer last appended (see `ChainHeadCache`).
    let chain = ChainHeadCache()
    private let walBound: WALBound
    /// Checkpoints a writer made to keep the WAL within its bound (for tests).
    public var boundingCheckpoints: Int { walBound.checkpoints.load(ordering: .relaxed) }
    /// Page size of a new database file.
    static let pageSize = 1024
    /// WAL frames written with one call so far (for tests and benchmarks).
    public static var combinedWALFrames: Int64 { procref_wal_frames_combined() }

    /// Opens (creating) the database in WAL mode and applies pending migrations.
    /// `walLimitFrames`: see `WALBound` (32,768 frames of 1 KiB pages: about 34 MB).
    public init(path: String, durability: Durability = .normal, readOnly: Bool = false, walLimitFrames: Int32 = 32_768) throws {
        // Before the first connection opens: each WAL frame is then written with one call.
        // (Should it fail, SQLite's own VFS writes the same bytes in twice as many calls.)
        _ = procref_wal_frames_register()
        let synchronous = durability == .full ? "FULL" : "NORMAL"
        let walBound = WALBound(limitFrames: walLimitFrames)
        do {
            pool = try DatabasePool(path: path, readOnly: readOnly, busyTimeoutMs: 5000) { db in
                guard !readOnly else { return }
                // Only takes effect when the file is created. Each commit changes about ten
                // pages (the lease and event rows, their indexes): 1 KiB pages write a
                // quarter of the bytes 4 KiB ones do, to the WAL and again at checkpoints.
                try db.execute(sql: "PRAGMA page_size = \(Self.pageSize)")
                try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
                // Checkpoints run on a background connection (see `checkpointInBackground`),
                // not inside whichever commit happens to fill the WAL.
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
                walBound.watch(db)
            }
        } catch {
            throw AuditStoreError.open(path: path, message: Self.message(error))
        }
        self.path = path
        self.walBound = walBound
        committer = GroupCommitter(pool: pool, walBound: walBound, chain: chain)
        if !readOnly { try MigrationRunner(migrations: Migration.embedded).apply(to: pool) }
        let last = (try? pool.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(id), 0) FROM events") }) ?? 0
        signal = EventSignal(lastID: last)
    }

    /// Moves the WAL into the database every `intervalMs` from a separate connection
    /// (PASSIVE: never waits for, nor blocks, writers), so commits do not pay for it.
    /// Returns the thread's stop flag holder; call `stop()` on shutdown.
    public func checkpointInBackground(intervalMs: Int = 500) throws -> BackgroundCheckpointer {
        try BackgroundCheckpointer(path: path, intervalMs: intervalMs, walBound: walBound)
    }

    /// Runs `body` atomically and returns once it is committed. Concurrent writers are
    /// grouped into one transaction (each in its own savepoint, so one failing body rolls
    /// back alone); nobody returns before the commit that holds their change.
    public func write<T>(_ body: (StoreTransaction) throws -> T) throws -> T {
        do {
            let (value, lastEventID) = try committer.perform { [chain] db in try Self.run(body, in: db, chain: chain) }
            if lastEventID > 0 { signal.published(lastID: lastEventID) }
            return value
        } catch {
            throw Self.storeError(error)
        }
    }

    /// Runs a writer's body and returns its value with the last event id it appended.
    static func run<T>(_ body: (StoreTransaction) throws -> T, in db: Database, chain: ChainHeadCache) throws -> (T, Int64) {
        let appended = AppendedEvents()
        let value = try body(StoreTransaction(db: db, appended: appended, chain: chain))
        return (value, appended.lastID)
    }

    static func storeError(_ error: Error) -> AuditStoreError {
        error as? AuditStoreError ?? .database(message(error))
    }

    /// Queues `body` behind every write queued before it and returns at once; await
    /// `committed()` for its outcome. Lets a caller fix the order of its writes under a
    /// lock of its own, then wait for the commit outside that lock (so writes of several
    /// callers can share a commit).
    public func submit<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) throws -> T) -> PendingWrite<T> {
        PendingWrite(store: self, pending: committer.submit { [chain] db in try Self.run(body, in: db, chain: chain) })
    }

    /// Queues a record that must not be lost: the end of a lease, a service's transition, a
    /// signal sent. Should the commit fail for want of storage (a full disk), it waits in
    /// memory and is committed, in order, before anything else once a commit succeeds again;
    /// its writer hears success meanwhile (what it records has happened). New acquires
    /// should be refused while any waits (`backlogCount`).
    public func submitRecord(_ body: @escaping @Sendable (StoreTransaction) throws -> Void) -> PendingWrite<Void> {
        // An id from a commit that failed must not be published: it was never written.
        PendingWrite(store: self, pending: committer.submit({ [chain] db in try Self.run(body, in: db, chain: chain) }, deferredValue: ((), 0)))
    }

    /// Records waiting for storage (see `submitRecord`).
    public var backlogCount: Int { committer.backlogCount }

    /// Tries the waiting records again (with an empty write of its own); throws while
    /// storage still fails.
    public func retryBacklog() throws {
        guard backlogCount > 0 else { return }
        try write { _ in }
    }

    /// `handler` runs on the committing thread whenever a commit fails for want of storage.
    /// Set it before writes begin.
    public func onStorageFailure(_ handler: @escaping @Sendable () -> Void) {
        committer.onStorageFailure = handler
    }

    /// The writer connection's `synchronous` setting as SQLite reports it (1 NORMAL, 2 FULL),
    /// so a check can see that `durability` took effect.
    public func writerSynchronous() throws -> Int {
        do {
            return try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } ?? -1
        } catch {
            throw Self.storeError(error)
        }
    }

    /// Runs `body` on a read snapshot (concurrent with writes under WAL).
    public func read<T>(_ body: (StoreReader) throws -> T) throws -> T {
        do {
            return try pool.read { db in try body(StoreReader(db: db)) }
        } catch {
            throw AuditStoreError.database(Self.message(error))
        }
    }

    /// Appends one event in its own transaction and returns it.
    @discardableResult
    public func append(_ event: NewEvent) throws -> Event {
        try write { try $0.append(event) }
    }

    static func message(_ error: Error) -> String {
        if let db = error as? DatabaseError { return db.message }
        return String(describing: error)
    }
}
