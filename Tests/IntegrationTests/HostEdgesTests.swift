import Foundation
import Glibc
import Posix
import Testing

/// The kernel-truth promise at a real host's edges: several daemons, SIGHUP, restarts.
@Suite("Host edges")
struct HostEdgesTests {
    @Test("two daemons with one service name keep separate sets; draining one leaves the other intact")
    func twoDaemonsOneName() throws {
        let first = try DaemonHarness()
        defer { first.shutdown() }
        let second = try DaemonHarness()
        defer { second.shutdown() }
        let name = first.uniqueName("shared")
        second.adoptServiceName(name)
        try first.defineSocketService(name)
        try second.defineSocketService(name)

        let a = try first.service(name), b = try second.service(name)
        #expect(a["semid"] as? Int != b["semid"] as? Int)
        #expect(a["key"] as? Int != b["key"] as? Int)

        let onFirst = try first.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 120_000])
        #expect(onFirst.status == 201, "\(onFirst.text)")
        var onSecond: [String] = []
        for _ in 0..<2 {
            let grant = try second.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 120_000])
            #expect(grant.status == 201, "\(grant.text)")
            onSecond.append(try #require(grant.json["id"] as? String))
        }
        #expect(try first.kernelCount(name) == 1)
        #expect(try second.kernelCount(name) == 2)
        #expect(try first.service(name)["count"] as? Int == 1)
        #expect(try second.service(name)["count"] as? Int == 2)

        let stop = try runProcrefd(["stop", "--drain", "--state-dir", first.stateDir, "--timeout", "30"])
        #expect(stop.code == 0, "\(stop.stderr)")
        #expect(first.semaphoreSetGone(name))
        #expect(!second.semaphoreSetGone(name))
        #expect(try second.kernelCount(name) == 2)
        let listed = try second.unix.get("/v1/leases?service=\(name)").json["leases"] as? [[String: Any]] ?? []
        #expect(Set(listed.compactMap { $0["id"] as? String }) == Set(onSecond))
        // The other daemon's set still works: release and acquire as usual.
        let release = try second.unix.send("DELETE", "/v1/leases/\(onSecond[0])")
        #expect(release.status == 200, "\(release.text)")
        #expect(release.json["count"] as? Int == 1)
        #expect(try second.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 1_000]).status == 201)
        #expect(!(try second.eventKinds(service: name)).contains("lease.revoked"))
    }

    @Test("a set at the derived key that this state dir did not make is never used, counted or removed")
    func foreignSetAtKey() throws {
        let daemon = try DaemonHarness()
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("clash")
        let foreign = try #require(try SemaphoreSet.create(key: SemaphoreSet.key(scope: daemon.scope, service: name)))
        defer { try? foreign.remove() }
        try daemon.defineSocketService(name)
        let status = try daemon.service(name)
        #expect(status["key"] as? Int == Int(SemaphoreSet.key(scope: daemon.scope, service: name, attempt: 1)))
        #expect(status["semid"] as? Int != Int(foreign.id))
        #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
        #expect(try foreign.count() == 0)

        let stop = try runProcrefd(["stop", "--drain", "--state-dir", daemon.stateDir, "--timeout", "30"])
        #expect(stop.code == 0, "\(stop.stderr)")
        #expect(daemon.semaphoreSetGone(name))
        #expect((try? foreign.stat()) != nil)
    }
}

/// Lease ends named by who ended them; SIGHUP; config removals.
@Suite("Host edges: signals and records")
struct RecordEdgesTests {
    @Test("SIGHUP without a config file is recorded and does not stop procrefd")
    func hangupWithoutConfig() throws {
        try withDaemon { daemon in
            // A HUP that comes before libdispatch has registered its source is ignored (not
            // fatal either): send until one is recorded.
            #expect(eventually {
                kill(daemon.process.processIdentifier, SIGHUP)
                usleep(50_000)
                return (try? daemon.events().contains { $0["kind"] as? String == "daemon.reload_skipped" }) == true
            })
            #expect(daemon.process.isRunning)
            let health = try daemon.unix.get("/v1/health")
            #expect(health.status == 200)
        }
    }

    @Test("after a restart, a release is recorded as released and a drain as revoked; adopted exits read alike")
    func endsAfterRestart() throws {
        let first = try DaemonHarness()
        defer { first.shutdown() }
        let name = first.uniqueName("relabel")
        try first.defineSocketService(name)
        var ids: [String] = []
        for _ in 0..<2 {
            let grant = try first.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 120_000])
            ids.append(try #require(grant.json["id"] as? String))
        }
        first.crash()

        let second = try DaemonHarness(stateDir: first.stateDir)
        defer { second.shutdown() }
        second.adoptServiceName(name)
        let release = try second.unix.send("DELETE", "/v1/leases/\(ids[0])")
        #expect(release.status == 200, "\(release.text)")
        let released = try second.events(service: name).last { $0["lease"] as? String == ids[0] }
        #expect(released?["kind"] as? String == "lease.released")
        let metrics = try second.unix.get("/metrics").text
        #expect(metrics.contains(#"procrefd_lease_ends_total{service="\#(name)",reason="released"} 1"#), "\(metrics)")
        #expect(!metrics.contains(#"reason="lost""#))

        let stop = try runProcrefd(["stop", "--drain", "--state-dir", second.stateDir, "--timeout", "30"])
        #expect(stop.code == 0, "\(stop.stderr)")
        second.shutdown()
        let reader = try DaemonHarness(stateDir: first.stateDir)
        defer { reader.shutdown() }
        let events = try reader.events(service: name)
        #expect(events.last { $0["lease"] as? String == ids[1] }?["kind"] as? String == "lease.revoked")
        #expect(!events.contains { $0["kind"] as? String == "lease.lost" })
        let stopped = events.last { $0["kind"] as? String == "service.stopped" }
        #expect((stopped?["detail"] as? [String: Any])?["exit"] as? String == "unknown (not our child)")
    }
}
