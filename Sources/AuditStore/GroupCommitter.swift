import CSQLite
import Dispatch
import Metrics
import Posix
import SQLite
import Synchronization

/// Leader/follower group commit. Writers queue their work in call order; whoever waits
/// while no commit is in progress becomes the leader and commits every queued item, batch
/// after batch, until the queue is empty; the others wait (asynchronously, or blocking for
/// synchronous callers), or are called back by the leader right after the commit
/// (`Pending.whenDone`). A writer that leads for long hands the rest to a committer thread
/// of its own. Several items share one transaction, each in a savepoint (a lone
/// item rolls back the whole transaction instead, which saves two statements), so under
/// `synchronous=FULL` N fsyncs become one and pages several rows share are written once.
/// Nobody returns before the commit that holds their change.
final class GroupCommitter: @unchecked Sendable {
    private let pool: DatabasePool
    private let walBound: WALBound
    /// The chain head the appends of the commits remember: forgotten whenever anything is
    /// rolled back, so it never names an event that is not there.
    let chain: ChainHeadCache
    /// Guards the fields below and the jobs' (`Job`).
    private let lock = Mutex(())
    private var queue: [Job] = []
    /// Records that must not be lost whose commit failed for want of storage (a full disk):
    /// each later commit tries them first, in order, before anything queued after them.
    private var backlog: [Job] = []
    /// Called (on the committing thread) when a commit fails for want of storage.
    var onStorageFailure: (@Sendable () -> Void)?
    private var leaderActive = false
    /// The committer thread leads what a writer's thread handed off (see `commitUntilEmpty`).
    private var committerStarted = false
    private let handedOff = DispatchSemaphore(value: 0)

    private let commitDuration = Timer(label: "procrefd_sqlite_commit_duration_seconds")
    private let batchSize = Recorder(label: "procrefd_sqlite_commit_batch_size")

    init(pool: DatabasePool, walBound: WALBound, chain: ChainHeadCache) {
        self.pool = pool
        self.walBound = walBound
        self.chain = chain
    }

    /// How a writer waits. Fields are guarded by the committer's lock.
    class Job: @unchecked Sendable {
        var done = false
        var commitError: Error?
        /// A record that must not be lost: when storage fails, it waits in the backlog and
        /// its writer hears success (see `submit(mustRecord:)`).
        var mustRecord: Bool { false }
        /// Its last run failed for want of storage (SQLITE_FULL, SQLITE_IOERR).
        var failedForStorage = false
        var continuation: CheckedContinuation<Void, Never>?
        var semaphore: DispatchSemaphore?
        /// Called by the leader once the job is committed (see `Pending.whenDone`).
        var onDone: (() -> Void)?

        /// Runs the writer's body; `alone` means without a savepoint. Returns false if it threw.
        func run(_ db: Database, alone: Bool) -> Bool { true }

        /// Drops the writer's closure (also when the commit failed before running it): a
        /// blocking writer's closure must not outlive its `perform`.
        func dropBody() {}

        /// Answers the writer as if committed (the record waits in the backlog).
        func deferAnswer() {}
    }

    /// A queued write; wait for it with `value()` (async) or `wait()`.
    final class Pending<T>: Job, @unchecked Sendable {
        unowned let committer: GroupCommitter
        /// Dropped once run, so nothing holds the writer's closure after its commit.
        private var body: ((Database) throws -> T)?
        /// Written by `run` before the job is marked done, read after.
        private var result: Result<T, Error>?
        /// What the writer hears when its record waits in the backlog; nil: not a record
        /// that must be kept.
        private let deferredValue: T?

        init(committer: GroupCommitter, body: @escaping (Database) throws -> T, deferredValue: T? = nil) {
            self.committer = committer
            self.body = body
            self.deferredValue = deferredValue
        }

        override var mustRecord: Bool { deferredValue != nil }

        override func dropBody() { body = nil }

        override func deferAnswer() {
            if let deferredValue { result = .success(deferredValue) }
        }

        override func run(_ db: Database, alone: Bool) -> Bool {
            guard let body else { return true }
            if !mustRecord { self.body = nil }  // a record to keep may run again
            failedForStorage = false
            do {
                if alone {
                    result = .success(try body(db))
                } else {
                    result = .success(try Self.inSavepoint(db) { try body(db) })
                }
                return true
            } catch {
                committer.chain.forget()  // its appends were rolled back
                result = .failure(error)
                failedForStorage = GroupCommitter.isStorageFailure(error)
                return false
            }
        }

        /// `body` in a savepoint that rolls back alone when it throws; its three statements
        /// are prepared once (the connection's cache).
        private static func inSavepoint<Value>(_ db: Database, _ body: () throws -> Value) throws -> Value {
            try db.cachedStatement(sql: "SAVEPOINT item").execute()
            let value: Value
            do {
                value = try body()
            } catch {
                // Rollback alone leaves the savepoint on SQLite's stack: release it too. The
                // body's error is the one to report: if SQLite already rolled
                // the whole transaction back, these fail too, and so will the commit.
                try? db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT item").execute()
                try? db.cachedStatement(sql: "RELEASE SAVEPOINT item").execute()
                throw error
            }
            try db.cachedStatement(sql: "RELEASE SAVEPOINT item").execute()
            return value
        }

        /// Waits for the commit without blocking a thread (unless this writer leads it).
        func value() async throws -> T {
            if committer.leadIfIdle(self) == false {
                await withCheckedContinuation { continuation in committer.park(self, continuation: continuation) }
            }
            return try outcome()
        }

        /// Commits on the calling thread when no commit is in progress (the job's batch, and
        /// whatever else is queued); nil when another thread leads: then await `value()`.
        func valueIfIdle() throws -> T? {
            guard committer.leadIfIdle(self) else { return nil }
            return try outcome()
        }

        /// Calls `body` with the outcome once the job's commit is over: on this thread when
        /// it already is, else on the leader's thread right after its commit. For a job a
        /// leader is at work on (`valueIfIdle` returned nil): no thread waits, and no task
        /// runs. `body` must be quick; it runs before the leader's next batch.
        func whenDone(_ body: @escaping (Result<T, Error>) -> Void) {
            let report = { [self] in body(Result { try outcome() }) }
            if !committer.notify(self, report) { report() }
        }

        /// Waits for the commit, blocking the calling thread.
        func wait() throws -> T {
            if committer.leadIfIdle(self) == false {
                let semaphore = DispatchSemaphore(value: 0)
                if committer.park(self, semaphore: semaphore) { semaphore.wait() }
            }
            return try outcome()
        }

        private func outcome() throws -> T {
            if let error = commitError { throw error }
            guard let result else { throw AuditStoreError.database("write produced no result") }
            return try result.get()
        }
    }

    /// Queues `body` behind every write queued before; it runs in a later commit. With
    /// `deferredValue`, it is a record that must not be lost: should storage fail, it waits
    /// in the backlog (bounded by `backlogLimit`) and the writer hears `deferredValue`.
    func submit<T>(_ body: @escaping (Database) throws -> T, deferredValue: T? = nil) -> Pending<T> {
        let pending = Pending(committer: self, body: body, deferredValue: deferredValue)
        lock.withLock { _ in queue.append(pending) }
        return pending
    }

    /// Runs `body` in the next commit and returns once it is committed.
    func perform<T>(_ body: (Database) throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { body in try submit(body).wait() }
    }

    /// Leads the commits when none is in progress; returns true once `job` is done that way
    /// (or was already), false when another leader is at work.
    private func leadIfIdle(_ job: Job) -> Bool {
        enum Turn { case done, busy, lead }
        let turn = lock.withLock { _ -> Turn in
            if job.done { return .done }
            if leaderActive { return .busy }
            leaderActive = true
            return .lead
        }
        switch turn {
        case .done: return true
        case .busy: return false
        case .lead:
            commitUntilEmpty(until: job)
            return true
        }
    }

    private func park(_ job: Job, continuation: CheckedContinuation<Void, Never>) {
        let done = lock.withLock { _ -> Bool in
            if job.done { return true }
            job.continuation = continuation
            return false
        }
        if done { continuation.resume() }
    }

    /// Returns false when the job finished meanwhile (call `report` now).
    private func notify(_ job: Job, _ report: @escaping () -> Void) -> Bool {
        lock.withLock { _ -> Bool in
            if job.done { return false }
            job.onDone = report
            return true
        }
    }

    /// Returns false when the job finished meanwhile (nothing to wait for).
    private func park(_ job: Job, semaphore: DispatchSemaphore) -> Bool {
        lock.withLock { _ -> Bool in
            if job.done { return false }
            job.semaphore = semaphore
            return true
        }
    }

    /// Commits batch after batch until the queue is empty. A writer's thread that leads
    /// (`own`) goes on past its own job only while it has led for less than `leadBudgetNs`,
    /// then hands what is left to the committer thread: under a steady stream of writes it
    /// would otherwise commit others' batches for as long as they keep coming, while the
    /// next requests of its own connections wait (measured: p99 at 32 clients 39–42 ms,
    /// 14–17 ms with the hand-off).
    private func commitUntilEmpty(until own: Job? = nil) {
        let begun = DispatchTime.now().uptimeNanoseconds
        enum Next { case finished, handOff, commit([Job]) }
        while true {
            let next = lock.withLock { _ -> Next in
                if queue.isEmpty {
                    leaderActive = false
                    return .finished
                }
                if let own, own.done, DispatchTime.now().uptimeNanoseconds - begun > Self.leadBudgetNs { return .handOff }
                // The backlog goes first: records keep their order.
                let batch = backlog + queue
                (queue, backlog) = ([], [])
                return .commit(batch)
            }
            let batch: [Job]
            switch next {
            case .finished: return
            case .handOff:
                handOff()  // still the leader, on the committer thread now
                return
            case let .commit(jobs): batch = jobs
            }
            let commitError = commit(batch)
            let storageFailed = commitError.map(Self.isStorageFailure) ?? false || batch.contains { $0.failedForStorage }
            if storageFailed { onStorageFailure?() }
            var continuations: [CheckedContinuation<Void, Never>] = []
            var semaphores: [DispatchSemaphore] = []
            var reports: [() -> Void] = []
            lock.withLock { _ in answer(batch, commitError: commitError, storageFailed: storageFailed, &continuations, &semaphores, &reports) }
            for continuation in continuations { continuation.resume() }
            for semaphore in semaphores { semaphore.signal() }
            for report in reports { report() }
        }
    }

    /// Under the lock, after a commit: marks the batch's jobs done (or keeps records that
    /// storage failed in the backlog) and collects how to wake their writers.
    private func answer(
        _ batch: [Job], commitError: Error?, storageFailed: Bool, _ continuations: inout [CheckedContinuation<Void, Never>],
        _ semaphores: inout [DispatchSemaphore], _ reports: inout [() -> Void]
    ) {
        for job in batch {
            // A record waits when storage failed it, and keeps waiting (already answered)
            // whatever failed its retry.
            if job.mustRecord, commitError != nil || job.failedForStorage, storageFailed || job.done {
                if backlog.count < Self.backlogLimit {
                    backlog.append(job)
                    if job.done { continue }  // from the backlog: nobody waits for it any more
                    job.deferAnswer()
                } else {
                    job.dropBody()
                    job.commitError = commitError ?? AuditStoreError.database("the backlog of records is full (\(Self.backlogLimit))")
                }
            } else {
                job.dropBody()
                if job.done { continue }  // a backlog record, now committed
                job.commitError = commitError
            }
            job.done = true
            if let continuation = job.continuation { continuations.append(continuation) }
            if let semaphore = job.semaphore { semaphores.append(semaphore) }
            if let report = job.onDone {
                reports.append(report)
                job.onDone = nil
            }
        }
    }

    /// Records waiting for storage, at most.
    static let backlogLimit = 100_000

    /// Records waiting in the backlog for a commit to succeed.
    var backlogCount: Int {
        lock.withLock { _ in backlog.count }
    }

    /// Whether `error` is SQLite's for a full disk or a failing device.
    static func isStorageFailure(_ error: Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        return error.resultCode == SQLITE_FULL || error.resultCode == SQLITE_IOERR
    }

    /// How long a writer's thread may lead others' batches once its own is committed.
    static let leadBudgetNs: UInt64 = 1_000_000

    /// Wakes the committer thread (started on first use) to lead the commits left.
    private func handOff() {
        let start = lock.withLock { _ -> Bool in
            defer { committerStarted = true }
            return !committerStarted
        }
        if start {
            do {
                // Weak: the thread ends once the committer is gone (its deinit wakes it).
                try DetachedThread.start(name: "procrefd-commit") { [weak self, handedOff] in
                    while true {
                        handedOff.wait()
                        guard let self else { return }
                        self.commitUntilEmpty()
                    }
                }
            } catch {
                // No thread: this one goes on leading.
                lock.withLock { _ in committerStarted = false }
                commitUntilEmpty()
                return
            }
        }
        handedOff.signal()
    }

    deinit { handedOff.signal() }

    /// Every body in the batch failed: nothing to commit.
    private struct Rollback: Error {}

    private func commit(_ batch: [Job]) -> Error? {
        let begun = DispatchTime.now().uptimeNanoseconds
        defer {
            commitDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - begun))
            batchSize.record(batch.count)
        }
        do {
            try pool.writeWithoutTransaction { db in
                walBound.finishIfDue(db)
                // Not `pool.write`: the batch decides between COMMIT and ROLLBACK itself.
                try db.cachedStatement(sql: "BEGIN IMMEDIATE").execute()
                let keep = batch.count == 1 ? batch[0].run(db, alone: true) : batch.map { $0.run(db, alone: false) }.contains(true)
                do {
                    guard keep else { throw Rollback() }
                    try db.cachedStatement(sql: "COMMIT").execute()
                } catch {
                    chain.forget()
                    // SQLite may have rolled back already (e.g. on SQLITE_FULL).
                    if db.isInsideTransaction { try? db.execute(sql: "ROLLBACK") }
                    if !(error is Rollback) { throw error }
                }
            }
            return nil
        } catch {
            chain.forget()
            return error
        }
    }
}
