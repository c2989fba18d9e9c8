import AuditStore
import Foundation
import Synchronization
import Testing
import Wire

/// The group committer under concurrent writers, with a real SQLite file: order, a failing
/// write in a batch, the hand-off to the committer thread, and completion callbacks.
@Suite("Group commit")
struct GroupCommitterTests {
    func withStore(_ body: (AuditStore) throws -> Void) throws { try withTemporaryStore(body) }

    @Test("concurrent writers all commit, each with its own id, and a failing one rolls back alone")
    func groupCommit() throws {
        struct Refused: Error {}
        try withStore { store in
            DispatchQueue.concurrentPerform(iterations: 200) { index in
                if index % 50 == 0 {
                    _ = try? store.write { tx in
                        try tx.append(NewEvent(.serviceDefined, service: "rolled-back"))
                        throw Refused()
                    }
                } else {
                    _ = try? store.append(NewEvent(.leaseAcquired, service: "w", lease: "l\(index)"))
                }
            }
            let events = try store.read { try $0.events(EventFilter(limit: 1000)) }
            #expect(events.count == 196)
            #expect(Set(events.compactMap(\.lease)).count == 196)
            #expect(!events.contains { $0.service == "rolled-back" })
            #expect(store.signal.lastID == events.last?.id)
        }
    }

    @Test("submitted writes commit in submission order, awaited in any order; a failing one rolls back alone")
    func submittedInOrder() async throws {
        struct Refused: Error {}
        let dir = NSTemporaryDirectory() + "procrefd-submit-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try AuditStore(path: "\(dir)/db")
        // Queued before anyone waits: the first awaited one leads and commits them all.
        let writes = (0..<20).map { index in
            store.submit { tx in
                if index == 7 { throw Refused() }
                try tx.append(NewEvent(.leaseAcquired, service: "o", lease: "l\(index)"))
            }
        }
        var failures = 0
        for write in writes.reversed() {
            do { try await write.committed() } catch { failures += 1 }
        }
        #expect(failures == 1)
        let events = try store.read { try $0.events(EventFilter(limit: 100)) }
        #expect(events.compactMap(\.lease) == (0..<20).filter { $0 != 7 }.map { "l\($0)" })
        #expect(store.signal.lastID == events.last?.id)
        // Async waiters and blocking writers mixed, from many tasks: every write lands once.
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<64 {
                group.addTask {
                    if index % 2 == 0 {
                        _ = try? await store.submit { tx in try tx.append(NewEvent(.leaseReleased, service: "m", lease: "m\(index)")) }.committed()
                    } else {
                        _ = try? store.append(NewEvent(.leaseReleased, service: "m", lease: "m\(index)"))
                    }
                }
            }
        }
        let mixed = try store.read { try $0.events(EventFilter(service: "m", limit: 100)) }
        #expect(Set(mixed.compactMap(\.lease)) == Set((0..<64).map { "m\($0)" }))
    }

    @Test("whenCommitted: a write left to another thread's commit is reported by the committing thread, failure included; a committed one at once")
    func whenCommittedReports() throws {
        struct Refused: Error {}
        let dir = NSTemporaryDirectory() + "procrefd-notify-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try AuditStore(path: "\(dir)/db")
        // The leader's first write waits inside its commit until the others are queued.
        let (entered, gate) = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0))
        defer { gate.signal() }  // never leave the leader waiting, even when an expectation fails
        let first = store.submit { tx in
            entered.signal()
            gate.wait()
            try tx.append(NewEvent(.leaseAcquired, service: "n", lease: "first"))
        }
        let leaderDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            _ = try? first.committedIfIdle()
            leaderDone.signal()
        }
        #expect(entered.wait(timeout: .now() + 10) == .success)
        let good = store.submit { tx in try tx.append(NewEvent(.leaseReleased, service: "n", lease: "good")) }
        let bad = store.submit { _ in throw Refused() }
        // The leader is inside its commit: these two are left to its next batch.
        #expect(try good.committedIfIdle() == nil)
        #expect(try bad.committedIfIdle() == nil)
        let reports = Mutex<[(String, Bool, pthread_t)]>([])
        let bothReported = DispatchSemaphore(value: 0)
        let report = { @Sendable (name: String, committed: Bool) in
            let count = reports.withLock { reports in
                reports.append((name, committed, pthread_self()))
                return reports.count
            }
            if count == 2 { bothReported.signal() }
        }
        good.whenCommitted { report("good", (try? $0.get()) != nil) }
        bad.whenCommitted { report("bad", (try? $0.get()) != nil) }
        #expect(reports.withLock { $0.isEmpty })
        gate.signal()
        #expect(leaderDone.wait(timeout: .now() + 10) == .success)
        #expect(bothReported.wait(timeout: .now() + 10) == .success)
        let reported = reports.withLock { $0 }
        #expect(reported.map(\.0) == ["good", "bad"])
        #expect(reported.map(\.1) == [true, false])
        // By the thread that committed them (the leader, or the committer thread it handed
        // off to), in one go: not on this thread, where they were registered.
        let me = pthread_self()
        #expect(reported.count == 2 && pthread_equal(reported[0].2, reported[1].2) != 0)
        #expect(reported.allSatisfy { pthread_equal($0.2, me) == 0 })
        let events = try store.read { try $0.events(EventFilter(service: "n", limit: 10)) }
        #expect(events.compactMap(\.lease) == ["first", "good"])
        #expect(store.signal.lastID == events.last?.id)
        // Already committed: reported at once, on the calling thread.
        let now = Mutex<Bool>(false)
        good.whenCommitted { outcome in now.withLock { $0 = (try? outcome.get()) != nil && pthread_equal(pthread_self(), me) != 0 } }
        #expect(now.withLock { $0 })
    }

    @Test("a writer that led past its budget returns once its own write commits; the committer thread commits the rest")
    func leaderHandsOff() throws {
        let dir = NSTemporaryDirectory() + "procrefd-handoff-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try AuditStore(path: "\(dir)/db")
        let (entered, gate) = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0))
        defer { gate.signal() }
        // The leader's own write takes longer than the budget, so the writes queued meanwhile
        // are handed off rather than committed by the leader.
        let own = store.submit { tx in
            entered.signal()
            gate.wait()
            usleep(3_000)
            try tx.append(NewEvent(.leaseAcquired, service: "h", lease: "own"))
        }
        let leaderThread = Mutex<pthread_t?>(nil)
        let leaderDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            leaderThread.withLock { $0 = pthread_self() }
            _ = try? own.committedIfIdle()
            leaderDone.signal()
        }
        #expect(entered.wait(timeout: .now() + 10) == .success)
        let others = (0..<3).map { index in store.submit { tx in try tx.append(NewEvent(.leaseReleased, service: "h", lease: "o\(index)")) } }
        let reports = Mutex<[pthread_t]>([])
        let allReported = DispatchSemaphore(value: 0)
        for write in others {
            #expect(try write.committedIfIdle() == nil)
            write.whenCommitted { _ in
                let count = reports.withLock { reports in
                    reports.append(pthread_self())
                    return reports.count
                }
                if count == others.count { allReported.signal() }
            }
        }
        gate.signal()
        #expect(leaderDone.wait(timeout: .now() + 10) == .success)
        #expect(allReported.wait(timeout: .now() + 10) == .success)
        let leader = try #require(leaderThread.withLock { $0 })
        #expect(reports.withLock { $0 }.allSatisfy { pthread_equal($0, leader) == 0 })
        let events = try store.read { try $0.events(EventFilter(service: "h", limit: 10)) }
        #expect(events.compactMap(\.lease) == ["own", "o0", "o1", "o2"])
        // The committer thread lets go of the lead once the queue is empty: later writes commit.
        let later = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            _ = try? store.append(NewEvent(.leaseReleased, service: "h", lease: "later"))
            later.signal()
        }
        #expect(later.wait(timeout: .now() + 10) == .success)
    }
}
