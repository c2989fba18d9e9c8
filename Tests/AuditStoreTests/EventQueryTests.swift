import AuditStore
import Foundation
import Synchronization
import Testing
import Wire

@Suite("Event queries, commit signal, retention")
struct EventQueryTests {
    func withStore(_ body: (AuditStore) throws -> Void) throws { try withTemporaryStore(body) }

    @Test("kinds (exact and prefix), pid, order and before")
    func filters() throws {
        try withStore { store in
            try store.append(NewEvent(.serviceDefined, service: "a"))
            try store.append(NewEvent(.leaseAcquired, service: "a", lease: "l1", pid: 7))
            try store.append(NewEvent(.leaseReleased, service: "a", lease: "l1", pid: 7))
            try store.append(NewEvent(.serviceStopped, service: "a", pid: 9))
            func kinds(_ filter: EventFilter) throws -> [String] { try store.read { try $0.events(filter) }.map(\.kind) }
            #expect(try kinds(EventFilter(kinds: ["lease.*"])) == ["lease.acquired", "lease.released"])
            #expect(try kinds(EventFilter(kinds: ["lease.released", "service.defined"])) == ["service.defined", "lease.released"])
            var byPID = EventFilter()
            byPID.pid = 9
            #expect(try kinds(byPID) == ["service.stopped"])
            var desc = EventFilter(limit: 2)
            desc.order = .desc
            #expect(try kinds(desc) == ["service.stopped", "lease.released"])
            desc.before = 3
            #expect(try kinds(desc) == ["lease.acquired", "service.defined"])
            #expect(EventFilter.isValidKind("lease.*") && EventFilter.isValidKind("audit.pruned"))
            #expect(!EventFilter.isValidKind("lease.[a]") && !EventFilter.isValidKind("*") && !EventFilter.isValidKind("Lease"))
        }
    }

    @Test("since/until compare instants, whatever the offset written")
    func timeRange() throws {
        try withStore { store in
            try store.append(NewEvent(.serviceDefined, service: "t"))
            let now = Date()
            var filter = EventFilter()
            filter.since = now.addingTimeInterval(-60)
            filter.until = now.addingTimeInterval(60)
            #expect(try store.read { try $0.events(filter) }.count == 1)
            filter.since = now.addingTimeInterval(60)
            filter.until = nil
            #expect(try store.read { try $0.events(filter) }.isEmpty)
            #expect(Timestamp.parse("2026-11-22T04:12:00+01:00") == Timestamp.parse("2026-11-22T03:12:00Z"))
            #expect(Timestamp.parse("2026-11-22T03:12:00.250Z")?.timeIntervalSince(Timestamp.parse("2026-11-22T03:12:00Z")!) == 0.25)
            #expect(Timestamp.parse("yesterday") == nil)
        }
    }

    @Test("the signal wakes a waiter on commit and times out otherwise")
    func signal() async throws {
        let dir = NSTemporaryDirectory() + "procrefd-signal-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try AuditStore(path: "\(dir)/db")
        let last = store.signal.lastID
        #expect(await store.signal.wait(after: last, timeoutMs: 50) == false)
        async let woke = store.signal.wait(after: last, timeoutMs: 30_000)
        try await Task.sleep(for: .milliseconds(50))
        try store.append(NewEvent(.serviceDefined, service: "s"))
        #expect(await woke)
        store.signal.close()
        #expect(await store.signal.wait(after: store.signal.lastID, timeoutMs: 30_000) == false)
    }

    @Test("retention removes the oldest events in batches and records the range")
    func retention() throws {
        try withStore { store in
            for index in 0..<25 { try store.append(NewEvent(.leaseAcquired, service: "r", lease: "l\(index)")) }
            var policy = RetentionPolicy(maxEvents: 10)
            policy.batchSize = 4
            let result = try #require(try store.prune(policy))
            #expect(result == PruneResult(fromID: 1, toID: 15, count: 15))
            let left = try store.read { try $0.events(EventFilter(limit: 100)) }
            #expect(left.count == 11)
            #expect(left.first?.id == 16)
            #expect(left.last?.kind == "audit.pruned")
            #expect(left.last?.detail["count"] == .int(15))
            #expect(try store.prune(policy) == nil)
            #expect(try store.prune(RetentionPolicy()) == nil)
            // Age: everything is younger than a day.
            #expect(try store.prune(RetentionPolicy(maxAgeDays: 1)) == nil)
            #expect(try store.prune(RetentionPolicy(maxAgeDays: 1), now: Date().addingTimeInterval(3 * 86_400))?.count == 11)
        }
    }

    @Test("retention at its default batch size prunes full batches (each over one write call of WAL)")
    func retentionFullBatches() throws {
        try withStore { store in
            for first in stride(from: 0, to: 2_500, by: 50) {
                try store.write { tx in
                    for index in first..<first + 50 {
                        try tx.append(NewEvent(.leaseAcquired, service: "r\(index % 5)", lease: "l\(index)", pid: Int32(index),
                                               detail: ["count": .int(Int64(index)), "ttl_ms": 60_000]))
                    }
                }
            }
            let result = try #require(try store.prune(RetentionPolicy(maxEvents: 100)))
            #expect(result.count == 2_400)
            #expect(try store.read { try $0.events(EventFilter(limit: 1_000)) }.count == 101)
        }
    }
}
