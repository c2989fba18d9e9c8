import Foundation
import Glibc
import ProcrefdClient
import Testing

/// `requires`: dependencies as kernel references, held by the dependent's main process.
@Suite("Dependencies")
struct DependencyTests {
    func leases(_ daemon: DaemonHarness, of name: String) throws -> [[String: Any]] {
        try daemon.unix.get("/v1/leases?service=\(name)").json["leases"] as? [[String: Any]] ?? []
    }

    @Test("web → db: the first acquire of web starts db first, held by web's main process; a direct lease makes 2; releasing web leaves db to its own last release")
    func chain() throws {
        try withDaemon { daemon in
            let (db, web) = (daemon.uniqueName("db"), daemon.uniqueName("web"))
            try daemon.defineSocketService(db)
            try daemon.defineSocketService(web, extra: ["requires": [db]])
            #expect(try daemon.service(web)["requires"] as? [String] == [db])
            #expect(try daemon.service(db)["required_by"] as? [String] == [web])

            let webLease = try daemon.leaseID(web)
            let webPID = try #require(try daemon.service(web)["pid"] as? Int)
            #expect(try daemon.service(db)["state"] as? String == "ready")
            // Held by web's main process once web is ready (the bridge lease goes then).
            #expect(eventually { (try? leases(daemon, of: db).map { $0["client_pid"] as? Int }) == [webPID] })
            let held = try #require(try leases(daemon, of: db).first)
            #expect(held["holder"] as? String == "requires:\(web)")
            #expect(try daemon.kernelCount(db) == 1)
            let events = try daemon.events()
            let dbReady = try #require(events.firstIndex { $0["kind"] as? String == "service.ready" && $0["service"] as? String == db })
            let webStarting = try #require(events.firstIndex { $0["kind"] as? String == "service.starting" && $0["service"] as? String == web })
            #expect(dbReady < webStarting)

            let direct = try daemon.leaseID(db)
            #expect(try daemon.kernelCount(db) == 2)
            let show = try runProcrefd(["service", "show", web, "--state-dir", daemon.stateDir])
            #expect(show.stdout.contains("requires:\n  └─ \(db)"), "\(show.stdout)")

            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(webLease)").status == 200)
            #expect(eventually { (try? daemon.service(web)["state"] as? String) == "stopped" })
            #expect(eventually { (try? daemon.kernelCount(db)) == 1 })
            #expect(try daemon.service(db)["state"] as? String == "ready")
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(direct)").status == 200)
            #expect(eventually { (try? daemon.service(db)["state"] as? String) == "stopped" })
        }
    }

    @Test("kill -9 of web's main process ends its hold on db (the kernel's word); web restarts and holds db again")
    func killedDependent() throws {
        try withDaemon { daemon in
            let (db, web) = (daemon.uniqueName("db"), daemon.uniqueName("web"))
            try daemon.defineSocketService(db)
            try daemon.defineSocketService(web, extra: ["requires": [db], "restart_backoff_ms": 100])
            _ = try daemon.leaseID(web)
            let first = try #require(try daemon.service(web)["pid"] as? Int)
            #expect(eventually { (try? leases(daemon, of: db).map { $0["client_pid"] as? Int }) == [first] })
            kill(Int32(first), SIGKILL)
            #expect(eventually(timeout: 15) {
                let pid = (try? daemon.service(web)["pid"] as? Int) ?? nil
                guard let pid, pid != first else { return false }
                return (try? leases(daemon, of: db).map { $0["client_pid"] as? Int }) == [pid]
            })
            #expect(try daemon.events(service: db).contains { $0["kind"] as? String == "lease.client_exited" })
            #expect(try daemon.kernelCount(db) == 1)
        }
    }

    @Test("a dependency that cannot start fails the start, naming it")
    func failingDependency() throws {
        try withDaemon { daemon in
            let (db, web) = (daemon.uniqueName("db"), daemon.uniqueName("web"))
            try daemon.defineSocketService(db, extra: ["start": ["sh", "-c", "echo no disk >&2; exit 1"], "restart_limit": 5])
            try daemon.defineSocketService(web, extra: ["requires": [db], "restart_limit": 5])
            let response = try daemon.unix.send("POST", "/v1/services/\(web)/leases", json: ["ttl_ms": 60_000])
            #expect(response.status == 503)
            #expect((response.json["detail"] as? String ?? "").contains("requires \(db)"), "\(response.text)")
            #expect(try !daemon.eventKinds(service: web).contains("service.starting"))
            #expect(try daemon.kernelCount(web) == 0)
            #expect(try daemon.kernelCount(db) == 0)
        }
    }

    @Test("unknown names and cycles are refused when defined (422 naming the cycle); a required service cannot be removed (409)")
    func graphChecks() throws {
        try withDaemon { daemon in
            let (a, b) = (daemon.uniqueName("a"), daemon.uniqueName("b"))
            let unknown = try daemon.unix.send("PUT", "/v1/services/\(a)", json: ["start": ["sleep", "30"], "requires": ["nowhere"]])
            #expect(unknown.status == 422)
            #expect(unknown.text.contains("no service nowhere"))
            let selfish = try daemon.unix.send("PUT", "/v1/services/\(a)", json: ["start": ["sleep", "30"], "requires": [a]])
            #expect(selfish.status == 422)
            #expect(selfish.text.contains("cycle"))
            #expect(try daemon.unix.send("PUT", "/v1/services/\(b)", json: ["start": ["sleep", "30"]]).status == 201)
            #expect(try daemon.unix.send("PUT", "/v1/services/\(a)", json: ["start": ["sleep", "30"], "requires": [b]]).status == 201)
            let cycle = try daemon.unix.send("PUT", "/v1/services/\(b)", json: ["start": ["sleep", "30"], "requires": [a]])
            #expect(cycle.status == 422)
            #expect(cycle.text.contains("\(a) → \(b) → \(a)") || cycle.text.contains("\(b) → \(a) → \(b)"), "\(cycle.text)")
            let removal = try daemon.unix.send("DELETE", "/v1/services/\(b)")
            #expect(removal.status == 409)
            #expect(removal.text.contains("service-required"))
            #expect(try daemon.unix.send("DELETE", "/v1/services/\(a)").status == 200)
            #expect(try daemon.unix.send("DELETE", "/v1/services/\(b)").status == 200)
        }
    }
}
