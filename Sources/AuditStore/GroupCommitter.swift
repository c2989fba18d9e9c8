import Foundation
import GRDB
import Metrics

/// Leader/follower group commit. Each writer queues its work; whoever finds no commit in
/// progress becomes the leader, runs every queued work item in one transaction (each in a
/// savepoint), commits once, and wakes the others. Under `synchronous=FULL` this turns N
/// fsyncs into one; nobody returns before the commit that holds their change.
final class GroupCommitter: @unchecked Sendable {
    private let pool: DatabasePool
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var leaderActive = false

    private let commitDuration = Timer(label: "procrefd_sqlite_commit_duration_seconds")
    private let batchSize = Recorder(label: "procrefd_sqlite_commit_batch_size")

    init(pool: DatabasePool) { self.pool = pool }

    /// One writer's work. Its closure is only run while its writer waits in `perform`.
    private final class Job: @unchecked Sendable {
        let work: (Database) -> Void
        var done = false
        var commitError: Error?
        init(work: @escaping (Database) -> Void) { self.work = work }
    }

    func perform<T>(_ body: (Database) throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { body in
            var result: Result<T, Error>?
            let job = Job { db in
                do {
                    var value: T?
                    try db.inSavepoint {
                        value = try body(db)
                        return .commit
                    }
                    result = value.map { .success($0) }
                } catch {
                    result = .failure(error)
                }
            }
            condition.lock()
            queue.append(job)
            while !job.done {
                if leaderActive {
                    condition.wait()
                    continue
                }
                leaderActive = true
                let batch = queue
                queue = []
                condition.unlock()
                var commitError: Error?
                let begun = DispatchTime.now().uptimeNanoseconds
                defer {
                    commitDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - begun))
                    batchSize.record(batch.count)
                }
                do {
                    try pool.writeWithoutTransaction { db in
                        try db.inTransaction(.immediate) {
                            for item in batch { item.work(db) }
                            return .commit
                        }
                    }
                } catch {
                    commitError = error
                }
                condition.lock()
                for item in batch {
                    item.commitError = commitError
                    item.done = true
                }
                leaderActive = false
                condition.broadcast()
            }
            condition.unlock()
            if let error = job.commitError { throw error }
            guard let result else { throw AuditStoreError.database("write produced no result") }
            return try result.get()
        }
    }
}
