import Foundation
import Glibc
import Posix
import ProcrefdClient
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

/// Running under a service manager: readiness on `NOTIFY_SOCKET`, `--listen HOST:PORT`.
@Suite("Service manager")
struct ServiceManagerTests {
    @Test("READY=1 with MAINPID reaches NOTIFY_SOCKET once procrefd listens; STOPPING=1 when it stops")
    func notifyReady() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        func receive() -> String? {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 20_000) == 1 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 512)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
        }

        let daemon = try DaemonHarness(extraArguments: ["--listen", "127.0.0.1"], environment: ["NOTIFY_SOCKET": path])
        defer { daemon.shutdown() }
        let ready = try #require(receive())
        #expect(ready.contains("READY=1"), "\(ready)")
        #expect(ready.contains("MAINPID=\(daemon.process.processIdentifier)"), "\(ready)")
        #expect(try daemon.tcp.get("/v1/health").status == 200)
        kill(daemon.process.processIdentifier, SIGTERM)
        #expect(receive()?.contains("STOPPING=1") == true)
    }

    @Test("--listen HOST:PORT and --port together are refused")
    func listenWithPortTwice() throws {
        let result = try runProcrefd(["serve", "--listen", "127.0.0.1:7000", "--port", "7001", "--state-dir", "/nonexistent"])
        #expect(result.code != 0)
        #expect(result.stderr.contains("port once"), "\(result.stderr)")
    }
}
