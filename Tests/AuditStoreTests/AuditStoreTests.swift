import AuditStore
import Foundation
import Testing
import Wire

@Suite("Audit store")
struct AuditStoreTests {
    func withStore(_ body: (AuditStore, String) throws -> Void) throws {
        let dir = NSTemporaryDirectory() + "procrefd-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(try AuditStore(path: "\(dir)/procrefd.db"), dir)
    }

    @Test("every migration file is applied once, in order, and recorded")
    func migrations() throws {
        try withStore { store, dir in
            let applied = try store.read { try $0.appliedMigrations() }
            #expect(applied == Migration.embedded.map(\.name))
            #expect(applied.first == "0001_initial")
            // Opening again applies nothing twice (it would fail: CREATE TABLE exists).
            let again = try AuditStore(path: "\(dir)/procrefd.db")
            #expect(try again.read { try $0.appliedMigrations() } == applied)
        }
    }

    @Test("durability sets the writer's synchronous: NORMAL, or FULL (which a WAL set-up must not undo)", arguments: Durability.allCases)
    func durabilityTakesEffect(_ durability: Durability) throws {
        let dir = NSTemporaryDirectory() + "procrefd-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try AuditStore(path: "\(dir)/procrefd.db", durability: durability)
        try store.append(NewEvent(.serviceDefined, service: "a"))
        #expect(try store.writerSynchronous() == (durability == .full ? 2 : 1))
    }

    @Test("events are appended with increasing ids and filtered by service, kind, lease, cursor")
    func eventsQuery() throws {
        try withStore { store, _ in
            try store.append(NewEvent(.serviceDefined, service: "a"))
            try store.append(NewEvent(.leaseAcquired, service: "a", lease: "l1", pid: 10, detail: ["count": 1]))
            try store.append(NewEvent(.leaseAcquired, service: "b", lease: "l2", pid: 11))
            try store.append(NewEvent(.leaseReleased, service: "a", lease: "l1", actor: "unix-socket", detail: ["count": 0]))

            let all = try store.read { try $0.events(EventFilter()) }
            #expect(all.map(\.id) == all.map(\.id).sorted())
            #expect(all.count == 4)
            #expect(try store.read { try $0.events(EventFilter(service: "a")) }.map(\.kind)
                    == ["service.defined", "lease.acquired", "lease.released"])
            #expect(try store.read { try $0.events(EventFilter(kinds: ["lease.acquired"])) }.map(\.lease) == ["l1", "l2"])
            let leaseEvents = try store.read { try $0.events(EventFilter(lease: "l1")) }
            #expect(leaseEvents.last?.detail["count"] == .int(0))
            let page = try store.read { try $0.events(EventFilter(after: all[1].id, limit: 1)) }
            #expect(page.map(\.id) == [all[2].id])
            #expect(all[3].actor == "unix-socket")
        }
    }

    @Test("WAL frames are written with one call each; readers see every commit, and plain SQLite reads the file as sound")
    func walFrames() throws {
        try withStore { store, dir in
            let combinedBefore = AuditStore.combinedWALFrames
            let reader = try AuditStore(path: "\(dir)/procrefd.db", readOnly: true)
            for index in 1...300 {
                try store.append(NewEvent(.leaseAcquired, service: "s\(index % 7)", lease: "l\(index)", pid: Int32(index)))
                // Another connection sees each commit at once: no frame is left half written.
                if index % 50 == 0 { #expect(try reader.read { try $0.events(EventFilter(limit: 1000)) }.count == index) }
            }
            #expect(AuditStore.combinedWALFrames - combinedBefore >= 300)
            // SQLite without the shim (Python's) reads the same file, WAL included.
            let check = Process()
            check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            check.arguments = ["python3", "-c", """
                import sqlite3, sys
                db = sqlite3.connect(sys.argv[1])
                print(db.execute('PRAGMA integrity_check').fetchone()[0], db.execute('SELECT COUNT(*) FROM events').fetchone()[0])
                """, "\(dir)/procrefd.db"]
            let out = Pipe()
            check.standardOutput = out
            try check.run()
            check.waitUntilExit()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(text.trimmingCharacters(in: .whitespacesAndNewlines) == "ok 300")
        }
    }

    @Test("a transaction whose WAL frames outgrow one write call commits whole (the shim writes them in parts)")
    func largeTransaction() throws {
        try withStore { store, _ in
            // About 1.4 MiB of WAL in one commit: SQLite's unix VFS writes at most 128 KiB per call.
            try store.write { tx in
                for index in 1...2_000 {
                    try tx.append(NewEvent(.leaseAcquired, service: "s\(index % 7)", lease: "l\(index)", pid: Int32(index)))
                }
            }
            #expect(try store.read { try $0.events(EventFilter(limit: 1000)) }.count == 1000)
            #expect(try store.read { try $0.events(EventFilter(lease: "l2000")) }.map(\.pid) == [2000])
        }
    }

    @Test("under a steady stream of commits the WAL stays within its bound (it grew by every commit before)",
          arguments: [false, true])
    func walBound(withCheckpointer: Bool) throws {
        let dir = NSTemporaryDirectory() + "procrefd-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 300 frames of 1 KiB pages; each commit below appends about eight.
        let store = try AuditStore(path: "\(dir)/procrefd.db", walLimitFrames: 300)
        let checkpointer = withCheckpointer ? try store.checkpointInBackground(intervalMs: 100) : nil
        defer { checkpointer?.stop() }
        for index in 1...3_000 {
            try store.append(NewEvent(.leaseAcquired, service: "s\(index % 7)", lease: "l\(index)", pid: Int32(index)))
        }
        // Unbounded, 3,000 commits leave about 25 MB. Alone, the writer's own fallback keeps it
        // within four times the bound and a commit: about 1.3 MB. With the checkpointer, the
        // WAL cannot rewind while a pass copies it, so it also grows by what is committed during
        // one pass: on a loaded machine (CI runs the suites in parallel) 2.1 MB was seen. A
        // quarter of the unbounded size still tells the two apart.
        let wal = try FileManager.default.attributesOfItem(atPath: "\(dir)/procrefd.db-wal")[.size] as? Int ?? 0
        #expect(wal < (withCheckpointer ? 6_000_000 : 2_000_000))
        #expect(store.boundingCheckpoints > 0)
        #expect(try store.read { try $0.events(EventFilter(lease: "l3000")) }.count == 1)
        #expect(try store.read { try $0.events(EventFilter(after: 2_000, limit: 1_000)) }.count == 1_000)
    }

    @Test("a transaction that throws records nothing")
    func rollback() throws {
        struct Boom: Error {}
        try withStore { store, _ in
            #expect(throws: (any Error).self) {
                try store.write { tx in
                    try tx.append(NewEvent(.serviceDefined, service: "x"))
                    throw Boom()
                }
            }
            let remaining = try store.read { try $0.events(EventFilter()) }
            #expect(remaining.isEmpty)
        }
    }

    @Test("leases are stored live and ended once")
    func leases() throws {
        try withStore { store, _ in
            let record = LeaseRecord(id: "l1", service: "a", holder: "me", holderPID: 5, holderStartTime: 99,
                                     clientPID: nil, ttlMs: 1000, acquiredAt: Timestamp.format(Date()), expiresAt: nil)
            try store.write { try $0.insertLease(record) }
            #expect(try store.read { try $0.liveLeases() }.map(\.id) == ["l1"])
            try store.write { try $0.endLease(id: "l1", reason: "released") }
            try store.write { try $0.endLease(id: "l1", reason: "lost") }
            #expect(try store.read { try $0.liveLeases() }.isEmpty)
            #expect(try store.read { try $0.lease(id: "l1") }?.endReason == "released")
        }
    }

    @Test("lease and event rows bound with SQLite's C API read back field for field; a failed insert throws and the next one works")
    func directBinding() throws {
        try withStore { store, _ in
            let full = LeaseRecord(id: "l1", service: "svc", holder: "ci job é", holderPID: 41, holderStartTime: UInt64.max - 7,
                                   clientPID: 1_234, ttlMs: 60_000, acquiredAt: "2026-11-26T00:30:29.512Z",
                                   expiresAt: "2026-11-26T00:31:29.512Z")
            let bare = LeaseRecord(id: "l2", service: "svc", holder: "", holderPID: 42, holderStartTime: 7,
                                   clientPID: nil, ttlMs: nil, acquiredAt: "2026-11-26T00:30:29.600Z", expiresAt: nil)
            try store.write { tx in
                try tx.insertLease(full)
                try tx.insertLease(bare)
            }
            #expect(try store.read { try $0.lease(id: "l1") } == full)
            #expect(try store.read { try $0.lease(id: "l2") } == bare)
            // The same id again: SQLite refuses it, the transaction records nothing, and the
            // statement serves the next write.
            #expect(throws: (any Error).self) { try store.write { tx in try tx.insertLease(full) } }
            var third = bare
            third.id = "l3"
            try store.write { try $0.insertLease(third) }
            #expect(try store.read { try $0.liveLeases() }.map(\.id).sorted() == ["l1", "l2", "l3"])
            let event = try store.append(NewEvent(.leaseAcquired, service: nil, lease: "l1", pid: nil, actor: "tcp:127.0.0.1:1",
                                                  detail: ["count": 2, "note": "a \"quoted\" word"]))
            let stored = try #require(try store.read { try $0.events(EventFilter(lease: "l1")) }.first)
            #expect(stored == event)
            #expect(stored.service == nil && stored.pid == nil)
        }
    }

    @Test("ended lease rows are pruned by their end time, in batches; live ones stay")
    func pruneEndedLeases() throws {
        try withStore { store, _ in
            let now = Timestamp.format(Date())
            for index in 0..<7 {
                try store.write { try $0.insertLease(LeaseRecord(
                    id: "p\(index)", service: "a", holder: "", holderPID: 5, holderStartTime: 99,
                    clientPID: nil, ttlMs: nil, acquiredAt: now, expiresAt: nil)) }
            }
            for index in 0..<5 { try store.write { try $0.endLease(id: "p\(index)", reason: "released") } }
            // Ended just now: a cutoff in the past keeps them.
            #expect(try store.pruneEndedLeases(endedBefore: Date().addingTimeInterval(-60), batchSize: 2) == 0)
            #expect(try store.read { try $0.lease(id: "p0") } != nil)
            // A cutoff after their end: all five go, two per transaction; the live two stay.
            #expect(try store.pruneEndedLeases(endedBefore: Date().addingTimeInterval(60), batchSize: 2) == 5)
            #expect(try (0..<5).allSatisfy { index in try store.read { try $0.lease(id: "p\(index)") } == nil })
            #expect(try store.read { try $0.liveLeases() }.map(\.id).sorted() == ["p5", "p6"])
            #expect(try store.pruneEndedLeases(endedBefore: Date().addingTimeInterval(60)) == 0)
            // The walk stops at the batch holding the first lease acquired after the cutoff:
            // a row past it is not looked at, even one whose (impossible) end is before the
            // cutoff. (q1 ended "before" it was acquired; it goes with its batch.)
            let old = Timestamp.format(Date().addingTimeInterval(-3_600))
            let later = Timestamp.format(Date().addingTimeInterval(3_600))
            for (id, acquired) in [("q0", old), ("q1", later), ("q2", old)] {
                try store.write { try $0.insertLease(LeaseRecord(
                    id: id, service: "a", holder: "", holderPID: 5, holderStartTime: 99,
                    clientPID: nil, ttlMs: nil, acquiredAt: acquired, expiresAt: nil)) }
                try store.write { try $0.endLease(id: id, reason: "released") }
            }
            #expect(try store.pruneEndedLeases(endedBefore: Date().addingTimeInterval(60), batchSize: 1) == 2)
            #expect(try store.read { try $0.lease(id: "q0") } == nil)
            #expect(try store.read { try $0.lease(id: "q2") } != nil)
        }
    }
}
