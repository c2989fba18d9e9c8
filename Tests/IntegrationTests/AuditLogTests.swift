import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// The audit log as a product: exact sequences, long-poll, streaming, paging, retention,
/// the offline reader, and no acknowledged event lost to kill -9.
@Suite("Audit log")
struct AuditLogTests {
    /// Every event of the state dir, read offline (the daemon may be down).
    func offlineEvents(_ stateDir: String, _ extra: [String] = []) throws -> [[String: Any]] {
        let result = try runProcrefd(["events", "--state-dir", stateDir, "--format", "json", "--limit", "1000000"] + extra)
        #expect(result.code == 0, "\(result.stderr)")
        let page = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return page?["events"] as? [[String: Any]] ?? []
    }

    func detail(_ event: [String: Any]?) -> [String: Any] { event?["detail"] as? [String: Any] ?? [:] }

    @Test("define → acquire ×2 → keepalive → release ×2 → daemon stop: the exact sequence")
    func fullScenario() throws {
        let daemon = try DaemonHarness()
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("audit")
        try daemon.defineSocketService(name)
        let a = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000, "holder": "a"])
        let b = try daemon.tcp.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000, "holder": "b"])
        let idA = try #require(a.json["id"] as? String), idB = try #require(b.json["id"] as? String)
        #expect(try daemon.unix.send("POST", "/v1/leases/\(idA)/keepalive").status == 200)
        #expect(try daemon.unix.send("DELETE", "/v1/leases/\(idA)").status == 200)
        #expect(try daemon.unix.send("DELETE", "/v1/leases/\(idB)").status == 200)
        #expect(try runProcrefd(["stop", "--state-dir", daemon.stateDir]).code == 0)

        let events = try offlineEvents(daemon.stateDir)
        #expect(events.compactMap { $0["kind"] as? String } == [
            "daemon.started", "service.defined", "service.starting", "service.ready", "lease.acquired", "lease.acquired",
            "lease.keepalive", "lease.released", "lease.released", "service.stopping", "service.stopped", "daemon.stopped",
        ])
        let acquired = events.filter { $0["kind"] as? String == "lease.acquired" }
        #expect(acquired.map { detail($0)["count"] as? Int } == [1, 2])
        // Who, as the kernel says on the socket (this test process), and by token over TCP.
        let me = getuid()
        let myName = try #require(Accounts.user(String(me))?.name)
        #expect(acquired.first?["actor"] as? String == "\(myName) (uid \(me))")
        let peer = acquired.first?["by"] as? [String: Any]
        #expect(peer?["kind"] as? String == "peer")
        #expect(peer?["uid"] as? Int == Int(me) && peer?["user"] as? String == myName)
        #expect(peer?["pid"] as? Int == Int(getpid()))
        #expect((peer?["comm"] as? String)?.isEmpty == false)
        #expect(acquired.last?["actor"] as? String == "token:admin")
        let token = acquired.last?["by"] as? [String: Any]
        #expect(token?["kind"] as? String == "token" && token?["name"] as? String == "admin" && token?["uid"] is NSNull)
        #expect(events.allSatisfy { ($0["hash"] as? String)?.count == 64 })
        let released = events.filter { $0["kind"] as? String == "lease.released" }
        #expect(released.map { $0["lease"] as? String } == [idA, idB])
        #expect(released.map { detail($0)["count"] as? Int } == [1, 0])
        #expect(detail(events.first { $0["kind"] as? String == "service.stopped" })["reason"] as? String == "last_release")
        #expect(detail(events.last)["mode"] as? String == "drain")
        let ids = events.compactMap { $0["id"] as? Int }
        #expect(ids == ids.sorted() && Set(ids).count == ids.count)
    }

    @Test("holder SIGKILL and TTL expiry: the exact sequences")
    func lostAndExpired() throws {
        try withDaemon { daemon in
            let lost = daemon.uniqueName("seq-lost")
            try daemon.defineSocketService(lost)
            let holder = try #require(try daemon.unix.send("POST", "/v1/services/\(lost)/leases", json: ["ttl_ms": 60_000]).json["holder_pid"] as? Int)
            kill(Int32(holder), SIGKILL)
            #expect(eventually { (try? daemon.eventKinds(service: lost).last) == "service.stopped" })
            #expect(try daemon.eventKinds(service: lost) == [
                "service.defined", "service.starting", "service.ready", "lease.acquired", "lease.lost", "service.stopping", "service.stopped",
            ])
            let lostEvent = try daemon.events(service: lost).first { $0["kind"] as? String == "lease.lost" }
            #expect(detail(lostEvent)["count"] as? Int == 0)
            #expect((detail(lostEvent)["holder_exit"] as? String)?.contains("SIGKILL") == true)

            let expired = daemon.uniqueName("seq-ttl")
            try daemon.defineSocketService(expired)
            #expect(try daemon.unix.send("POST", "/v1/services/\(expired)/leases", json: ["ttl_ms": 300]).status == 201)
            #expect(eventually { (try? daemon.eventKinds(service: expired).last) == "service.stopped" })
            #expect(try daemon.eventKinds(service: expired) == [
                "service.defined", "service.starting", "service.ready", "lease.acquired", "lease.expired", "service.stopping", "service.stopped",
            ])
        }
    }

    @Test("a long-poll is woken by the next matching event, not by its deadline")
    func longPoll() throws {
        try withDaemon { daemon in
            let last = try #require(try daemon.unix.get("/v1/events?order=desc&limit=1").json["next_after"] as? Int)
            let name = daemon.uniqueName("poll")
            let box = ResponseBox()
            let poller = Thread {
                let started = Date()
                let response = try? daemon.unix.get("/v1/events?after=\(last)&kind=service.defined&wait_ms=20000")
                box.set(response, Date().timeIntervalSince(started))
            }
            poller.start()
            usleep(300_000)  // let the poll start waiting; correctness does not depend on it
            #expect(box.get() == nil, "the long-poll returned before any event")
            let defined = Date()
            try daemon.defineSocketService(name)
            #expect(eventually { box.get() != nil })
            let (response, _) = try #require(box.get())
            let events = response?.json["events"] as? [[String: Any]] ?? []
            #expect(events.first?["kind"] as? String == "service.defined")
            #expect(events.first?["service"] as? String == name)
            // Woken by the event: far sooner than the 20 s deadline (the latency is measured in bench/).
            #expect(Date().timeIntervalSince(defined) < 5)
        }
    }

    @Test("NDJSON streaming delivers matching events in order as they happen")
    func ndjsonStream() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("stream")
            let reader = try StreamReader(socket: "\(daemon.stateDir)/procrefd.sock", path: "/v1/events?service=\(name)&kind=lease.*")
            defer { reader.close() }
            try daemon.defineSocketService(name)
            var expected: [String] = []
            for _ in 0..<3 {
                let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
                let id = try #require(grant.json["id"] as? String)
                #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
                expected += ["lease.acquired:\(id)", "lease.released:\(id)"]
            }
            let lines = try reader.lines(count: expected.count, timeout: 10)
            #expect(reader.contentType == "application/x-ndjson")
            let events = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(events.map { "\($0["kind"] as? String ?? ""):\($0["lease"] as? String ?? "")" } == expected, "\(reader.received)")
            let ids = events.compactMap { $0["id"] as? Int }
            #expect(ids == ids.sorted())
        }
    }

    @Test("cursor pagination visits every event exactly once, both ways")
    func pagination() throws {
        try withDaemon { daemon in
            for index in 0..<12 { try daemon.defineSocketService(daemon.uniqueName("page\(index)")) }
            let all = try daemon.events().compactMap { $0["id"] as? Int }
            #expect(all.count >= 13)
            var seen: [Int] = []
            var after = 0
            while true {
                let page = try daemon.unix.get("/v1/events?after=\(after)&limit=5").json
                let ids = (page["events"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? Int }
                if ids.isEmpty { break }
                seen += ids
                after = try #require(page["next_after"] as? Int)
            }
            #expect(seen == all)
            var backwards: [Int] = []
            var before: Int? = nil
            repeat {
                let page = try daemon.unix.get("/v1/events?order=desc&limit=4" + (before.map { "&before=\($0)" } ?? "")).json
                backwards += (page["events"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? Int }
                before = page["next_before"] as? Int
            } while before != nil
            #expect(backwards == all.reversed())
            let defined = try daemon.unix.get("/v1/events?kind=service.*&kind=daemon.started&limit=1000").json["events"] as? [[String: Any]]
            #expect(defined?.count == 13)
            #expect(try daemon.unix.get("/v1/events?kind=Bad-Kind").status == 422)
            #expect(try daemon.unix.get("/v1/events?since=yesterday").status == 422)
            let future = try daemon.unix.get("/v1/events?since=2999-01-01T00:00:00Z").json["events"] as? [Any]
            #expect(future?.isEmpty == true)
            let past = try daemon.unix.get("/v1/events?until=2999-01-01T00:00:00%2B01:00&limit=1000").json["events"] as? [Any]
            #expect(past?.count == all.count)
        }
    }

    @Test("the offline reader prints the same events as the API")
    func offlineMatchesAPI() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("offline")
            try daemon.defineSocketService(name)
            let lease = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(lease.status == 201)
            let api = try #require(try daemon.unix.get("/v1/events?service=\(name)").json["events"] as? [[String: Any]])
            let offline = try offlineEvents(daemon.stateDir, ["--service", name])
            #expect(NSArray(array: api).isEqual(to: offline))
            let table = try runProcrefd(["events", "--state-dir", daemon.stateDir, "--service", name])
            #expect(table.code == 0)
            #expect(table.stdout.split(separator: "\n").count == api.count + 1)
            #expect(!table.stdout.contains("\u{1B}["), "no colour when not a terminal")
        }
    }

    @Test("retention prunes in the background and records what it removed")
    func retention() throws {
        let dir = try makeTemporaryDirectory()
        try "[audit]\nretention_max_events = 10\nprune_interval_ms = 200\n".write(toFile: "\(dir)/p.toml", atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(stateDir: dir, extraArguments: ["--config", "\(dir)/p.toml"])
        defer {
            daemon.shutdown()
            try? FileManager.default.removeItem(atPath: dir)
        }
        for index in 0..<15 {
            let name = "ret\(index)-\(UUID().uuidString.prefix(6).lowercased())"
            daemon.adoptServiceName(name)
            try daemon.defineSocketService(name)
        }
        #expect(eventually { (try? daemon.events().contains { $0["kind"] as? String == "audit.pruned" }) == true })
        let events = try daemon.events()
        let pruned = try #require(events.last { $0["kind"] as? String == "audit.pruned" })
        let removed = try #require(detail(pruned)["count"] as? Int)
        #expect(removed >= 6)
        #expect(detail(pruned)["from_id"] as? Int == 1)
        #expect(events.filter { $0["kind"] as? String != "audit.pruned" }.count <= 10)
        #expect(events.first?["id"] as? Int ?? 0 > (detail(pruned)["to_id"] as? Int ?? 0) || events.first?["kind"] as? String == "audit.pruned")
    }

    @Test("rows of leases ended before the idempotency window are pruned in the background; live ones and all events stay")
    func endedLeaseRowsPruned() throws {
        let dir = try makeTemporaryDirectory()
        try "[limits]\nidempotency_window_ms = 1000\n[audit]\nprune_interval_ms = 200\n"
            .write(toFile: "\(dir)/p.toml", atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(stateDir: dir, extraArguments: ["--config", "\(dir)/p.toml"])
        defer {
            daemon.shutdown()
            try? FileManager.default.removeItem(atPath: dir)
        }
        let name = daemon.uniqueName("rows")
        try daemon.defineSocketService(name)
        let live = try #require(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 600_000]).json["id"] as? String)
        var ended: [String] = []
        for _ in 0..<3 {
            let id = try #require(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 600_000]).json["id"] as? String)
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
            ended.append(id)
        }
        let database = "\(dir)/procrefd.db"
        let rows = { () -> String in sqliteAnswer(database, "SELECT group_concat(id) FROM leases") }
        // The window is 1 s and a pass runs every 200 ms: the ended rows go, the live one stays.
        #expect(eventually(timeout: 10) { rows() == live })
        let released = try daemon.events(service: name).filter { $0["kind"] as? String == "lease.released" }.compactMap { $0["lease"] as? String }
        #expect(Set(released) == Set(ended))
        #expect(try daemon.unix.get("/v1/leases/\(live)").status == 200)
    }

    @Test("kill -9 under load loses no acknowledged event; the database stays sound")
    func durability() throws {
        let daemon = try DaemonHarness()
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("durable")
        try daemon.defineSocketService(name)
        #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 600_000]).status == 201)
        let acked = AckLog()
        let deadline = Date().addingTimeInterval(1.5)
        let workers = (0..<4).map { _ in
            Thread {
                while Date() < deadline {
                    guard let grant = try? daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 600_000]),
                        grant.status == 201, let id = grant.json["id"] as? String
                    else { continue }
                    acked.add("lease.acquired:\(id)")
                    if let release = try? daemon.unix.send("DELETE", "/v1/leases/\(id)"), release.status == 200 {
                        acked.add("lease.released:\(id)")
                    }
                }
                acked.done()
            }
        }
        workers.forEach { $0.start() }
        #expect(eventually(timeout: 5) { acked.count >= 20 })
        daemon.crash()
        #expect(eventually(timeout: 30) { acked.finished == workers.count })

        let recorded = Set(try offlineEvents(daemon.stateDir, ["--service", name]).map {
            "\($0["kind"] as? String ?? ""):\($0["lease"] as? String ?? "")"
        })
        let missing = acked.all.filter { !recorded.contains($0) }
        #expect(acked.all.count >= 20)
        #expect(missing.isEmpty, "acknowledged but not recorded: \(missing.prefix(5))")
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["python3", "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])",
                           "\(daemon.stateDir)/procrefd.db"]
        let out = Pipe()
        check.standardOutput = out
        try check.run()
        check.waitUntilExit()
        #expect(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "ok")
        // Restart once so the orphaned holders are re-adopted and then drained by shutdown.
        let again = try DaemonHarness(stateDir: daemon.stateDir)
        again.shutdown()
    }
}

final class ResponseBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (TestHTTPClient.Response?, Double)?
    func set(_ response: TestHTTPClient.Response?, _ seconds: Double) { lock.withLock { value = (response, seconds) } }
    func get() -> (TestHTTPClient.Response?, Double)? { lock.withLock { value } }
}

final class AckLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    private var finishedWorkers = 0
    func add(_ item: String) { lock.withLock { items.append(item) } }
    func done() { lock.withLock { finishedWorkers += 1 } }
    var all: [String] { lock.withLock { items } }
    var count: Int { lock.withLock { items.count } }
    var finished: Int { lock.withLock { finishedWorkers } }
}

/// Reads an NDJSON response line by line from the Unix socket.
final class StreamReader {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var contentType = ""
    private var headerDone = false

    init(socket: String, path: String) throws {
        fd = socket.withCString { _ in Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in socket.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw TestHTTPClient.Failure(description: "connect: errno \(errno)") }
        let request = "GET \(path) HTTP/1.1\r\nHost: localhost\r\nAccept: application/x-ndjson\r\n\r\n"
        _ = request.withCString { write(fd, $0, strlen($0)) }
    }

    /// The next `count` non-empty body lines (chunk framing removed).
    func lines(count: Int, timeout: Double) throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var lines: [String] = []
        var body = ""
        while lines.count < count && Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { break }
            buffer += chunk[0..<n]
            if !headerDone, let end = String(decoding: buffer, as: UTF8.self).range(of: "\r\n\r\n") {
                let text = String(decoding: buffer, as: UTF8.self)
                let head = text[..<end.lowerBound]
                contentType = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-type:") }
                    .map { String($0.dropFirst("content-type:".count)).trimmingCharacters(in: .whitespaces) } ?? ""
                buffer = Array(text[end.upperBound...].utf8)
                headerDone = true
            }
            guard headerDone else { continue }
            body += String(decoding: buffer, as: UTF8.self)
            buffer = []
            // Chunked framing: size lines are hex only; event lines are JSON objects.
            // (Split bytes: Swift treats "\r\n" as one Character.)
            lines = body.utf8.split(separator: 10).map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
                .filter { $0.hasPrefix("{") }
        }
        received = body
        return Array(lines.prefix(count))
    }

    /// The body text read so far (for failure messages).
    private(set) var received = ""

    func close() { Glibc.close(fd) }
}

/// The first column of the first row `sql` yields in the SQLite file at `path` (read-only,
/// through Python's sqlite3: another library than procrefd's), as text; "" when none.
func sqliteAnswer(_ path: String, _ sql: String) -> String {
    let query = Process()
    query.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    query.arguments = ["python3", "-c", """
        import sqlite3, sys
        row = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True).execute(sys.argv[2]).fetchone()
        print("" if row is None or row[0] is None else row[0])
        """, path, sql]
    let out = Pipe()
    query.standardOutput = out
    guard (try? query.run()) != nil else { return "" }
    query.waitUntilExit()
    return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Who did it, and whether anyone edited the record since.
@Suite("Audit principals and chain")
struct AuditPrincipalTests {
    @Test("events?user= finds what a user caused (name or uid); procrefd events --user too; an unknown user is 422")
    func byUser() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("who")
            try daemon.defineSocketService(name)
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
            let me = getuid()
            let myName = try #require(Accounts.user(String(me))?.name)
            for user in [myName, String(me)] {
                let mine = try daemon.unix.get("/v1/events?user=\(user)&service=\(name)").json["events"] as? [[String: Any]] ?? []
                // The acquire started the service: "who started it at 03:12" has an answer.
                #expect(mine.compactMap { $0["kind"] as? String } == ["service.defined", "service.starting", "service.ready", "lease.acquired"], "\(user)")
            }
            #expect((try daemon.unix.get("/v1/events?user=nobody").json["events"] as? [[String: Any]])?.isEmpty == true)
            #expect(try daemon.unix.get("/v1/events?user=no-such-user-here").status == 422)
            let cli = try runProcrefd(["events", "--user", myName, "--service", name, "--state-dir", daemon.stateDir])
            #expect(cli.code == 0 && cli.stdout.contains("lease.acquired") && cli.stdout.contains("\(myName) (uid \(me))"), "\(cli.stdout)")
            #expect(try runProcrefd(["events", "--user", "nobody", "--service", name, "--state-dir", daemon.stateDir, "--format", "ndjson"]).stdout.isEmpty)
        }
    }

    @Test("events verify: ok on a live database; after an UPDATE through the sqlite3 CLI (triggers dropped) it names that id and exits 1")
    func verify() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("chain")
            try daemon.defineSocketService(name)
            for _ in 0..<3 { #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201) }
            let intact = try runProcrefd(["events", "verify", "--state-dir", daemon.stateDir])
            #expect(intact.code == 0 && intact.stdout.contains(": ok"), "\(intact.stdout) \(intact.stderr)")
            let target = try #require(try daemon.events(service: name).first { $0["kind"] as? String == "lease.acquired" }?["id"] as? Int)
            let database = "\(daemon.stateDir)/procrefd.db"
            let refused = try runProgram("/usr/bin/sqlite3", [database, "UPDATE events SET actor = 'someone else' WHERE id = \(target);"])
            #expect(refused.code != 0 && refused.stderr.contains("append-only"), "\(refused)")
            let edited = try runProgram("/usr/bin/sqlite3", [database, "DROP TRIGGER events_append_only_update; UPDATE events SET actor = 'someone else' WHERE id = \(target);"])
            #expect(edited.code == 0, "\(edited)")
            let broken = try runProcrefd(["events", "verify", "--state-dir", daemon.stateDir])
            #expect(broken.code == 1)
            #expect(broken.stdout.contains("event \(target) does not match"), "\(broken.stdout)")
        }
    }

}
