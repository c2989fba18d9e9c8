import AuditStore
import Foundation
import SQLite
import Testing

/// The hash chain: intact as written, broken where the file was edited, kept whole by
/// retention, and events append-only.
@Suite("Audit chain")
struct AuditChainTests {
    func withStore(_ body: (AuditStore, String) throws -> Void) throws {
        let dir = NSTemporaryDirectory() + "procrefd-chain-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(try AuditStore(path: "\(dir)/procrefd.db"), "\(dir)/procrefd.db")
    }

    func appendSome(_ store: AuditStore, _ count: Int) throws {
        for index in 0..<count {
            try store.append(NewEvent(
                .leaseAcquired, service: "s", lease: "l\(index)", pid: Int32(100 + index),
                actor: .peer(uid: 1000, user: "alice", pid: 4242, comm: "curl"), detail: ["count": .int(Int64(index))]))
        }
    }

    @Test("a chain as written verifies; every event has a 32-byte link to the one before")
    func intact() throws {
        try withStore { store, _ in
            try appendSome(store, 50)
            let result = try store.read { try $0.verifyChain(batch: 7) }
            #expect(result.isIntact && result.checked == 50)
            let events = try store.read { try $0.events(EventFilter(limit: 1000)) }
            #expect(events.allSatisfy { $0.hash?.count == 64 })
            #expect(result.headHash == events.last?.hash)
            #expect(events.first?.by == .peer(uid: 1000, user: "alice", pid: 4242, comm: "curl"))
        }
    }

    @Test("UPDATE and DELETE are refused by triggers; an edit with the triggers dropped names the first bad id")
    func tampering() throws {
        try withStore { store, path in
            try appendSome(store, 20)
            let queue = try DatabasePool(path: path)
            #expect(throws: (any Error).self) { try queue.write { try $0.execute(sql: "UPDATE events SET actor = 'nobody' WHERE id = 5") } }
            #expect(throws: (any Error).self) { try queue.write { try $0.execute(sql: "DELETE FROM events WHERE id = 5") } }
            let ids = try store.read { try $0.events(EventFilter(limit: 1000)) }.map(\.id)
            let target = ids[7]
            try queue.write { db in
                try db.execute(sql: "DROP TRIGGER events_append_only_update")
                try db.execute(sql: "UPDATE events SET detail = '{\"count\":99}' WHERE id = ?", arguments: [target])
            }
            let result = try store.read { try $0.verifyChain() }
            #expect(result.firstBroken == target)
            #expect(result.checked == 7)
        }
    }

    @Test("a removed event breaks the chain at the one after it")
    func removal() throws {
        try withStore { store, path in
            try appendSome(store, 10)
            let ids = try store.read { try $0.events(EventFilter(limit: 1000)) }.map(\.id)
            let queue = try DatabasePool(path: path)
            try queue.write { db in
                try db.execute(sql: "DROP TRIGGER events_append_only_delete")
                try db.execute(sql: "DELETE FROM events WHERE id = ?", arguments: [ids[4]])
            }
            #expect(try store.read { try $0.verifyChain() }.firstBroken == ids[5])
        }
    }

    @Test("retention moves the anchor: the chain still verifies, and audit.pruned names the anchor's hash")
    func retention() throws {
        try withStore { store, _ in
            try appendSome(store, 30)
            let before = try store.read { try $0.events(EventFilter(limit: 1000)) }
            var policy = RetentionPolicy(maxEvents: 10)
            policy.batchSize = 7
            let pruned = try #require(try store.prune(policy))
            #expect(pruned.count == 20)
            let result = try store.read { try $0.verifyChain() }
            #expect(result.isIntact, "\(result)")
            #expect(result.anchorID == pruned.toID)
            let record = try store.read { try $0.events(EventFilter(kinds: ["audit.pruned"])) }.last
            #expect(record?.detail["anchor_hash"] == .string(before.first { $0.id == pruned.toID }?.hash ?? ""))
            try appendSome(store, 3)
            #expect(try store.read { try $0.verifyChain() }.isIntact)
        }
    }

    struct Refused: Error {}

    @Test("an append rolled back (alone, or in its savepoint within a batch) leaves no link behind: the next append links to what is there")
    func rolledBack() async throws {
        let dir = NSTemporaryDirectory() + "procrefd-chain-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try AuditStore(path: "\(dir)/procrefd.db")
        try appendSome(store, 3)
        // Alone: the batch of one rolls back whole.
        #expect(throws: (any Error).self) { try store.write { tx in try tx.append(NewEvent(.serviceDefined, service: "gone")); throw Refused() } }
        try appendSome(store, 2)
        // In a batch: queued together, committed together, the middle one rolled back alone.
        let writes = (0..<3).map { index in
            store.submit { tx in
                try tx.append(NewEvent(.serviceDefined, service: "batch-\(index)"))
                if index == 1 { throw Refused() }
            }
        }
        var failures = 0
        for write in writes { do { try await write.committed() } catch { failures += 1 } }
        #expect(failures == 1)
        try appendSome(store, 2)
        let result = try store.read { try $0.verifyChain() }
        #expect(result.isIntact, "\(result)")
        let services = try store.read { try $0.events(EventFilter(limit: 1000)) }.compactMap(\.service)
        #expect(!services.contains("gone") && !services.contains("batch-1") && services.contains("batch-2"))
    }
}
