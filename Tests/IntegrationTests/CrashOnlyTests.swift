import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// Killing or upgrading procrefd loses no lease; one daemon per state dir; clean exits.
@Suite("Crash-only daemon")
struct CrashOnlyTests {
    /// Defines a service and takes three leases on it; returns their ids, holders and the service pid.
    func threeLeases(_ daemon: DaemonHarness, _ name: String) throws -> (ids: [String], holders: [Int32], service: Int32) {
        _ = try daemon.defineSocketService(name)
        var ids: [String] = [], holders: [Int32] = []
        for index in 0..<3 {
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["holder": "h\(index)", "ttl_ms": 120_000])
            #expect(grant.status == 201, "\(grant.text)")
            ids.append(try #require(grant.json["id"] as? String))
            holders.append(Int32(try #require(grant.json["holder_pid"] as? Int)))
        }
        let service = Int32(try #require(try daemon.unix.get("/v1/services/\(name)").json["pid"] as? Int))
        return (ids, holders, service)
    }

    /// Releases every lease through `daemon`; the service must stop exactly on the last one.
    func releaseAll(_ daemon: DaemonHarness, _ name: String, _ ids: [String], service: Int32) throws {
        for (index, id) in ids.enumerated() {
            let release = try daemon.unix.send("DELETE", "/v1/leases/\(id)")
            #expect(release.status == 200, "\(release.text)")
            #expect(release.json["count"] as? Int == ids.count - index - 1)
            #expect(release.json["service_stopped"] as? Bool == (index == ids.count - 1))
        }
        #expect(try daemon.kernelCount(name) == 0)
        #expect(!groupRuns(service))
    }

    @Test("kill -9 of procrefd keeps holders, service and count; a new procrefd re-adopts them")
    func crashAndReadopt() throws {
        let first = try DaemonHarness()
        defer { first.shutdown() }
        let name = first.uniqueName("crash")
        let (ids, holders, service) = try threeLeases(first, name)

        first.crash()
        #expect(holders.allSatisfy(isAlive))
        #expect(isAlive(service))
        #expect(try first.kernelCount(name) == 3)

        let second = try DaemonHarness(stateDir: first.stateDir)
        defer { second.shutdown() }
        second.adoptServiceName(name)
        let daemon = try second.unix.get("/v1/daemon").json
        #expect(daemon["singleton"] as? String == "stale_socket_cleaned")
        #expect((daemon["adopted"] as? [String: Any])?["leases"] as? Int == 3)
        #expect((daemon["adopted"] as? [String: Any])?["services"] as? Int == 1)
        let listed = try second.unix.get("/v1/leases?service=\(name)").json["leases"] as? [[String: Any]] ?? []
        #expect(Set(listed.compactMap { $0["id"] as? String }) == Set(ids))
        let status = try second.unix.get("/v1/services/\(name)").json
        #expect(status["state"] as? String == "ready")
        #expect(status["pid"] as? Int == Int(service))
        let kinds = try second.eventKinds(service: name)
        #expect(kinds.filter { $0 == "lease.readopted" }.count == 3)
        #expect(kinds.contains("service.adopted"))
        #expect(try second.events().contains { $0["kind"] as? String == "daemon.stale_socket_cleaned" })

        let stopsBefore = kinds.filter { $0 == "service.stopped" }.count
        try releaseAll(second, name, ids, service: service)
        #expect(try second.eventKinds(service: name).filter { $0 == "service.stopped" }.count == stopsBefore + 1)
    }

    @Test("hand-off leaves everything running for the next procrefd")
    func handOff() throws {
        let first = try DaemonHarness(extraArguments: ["--on-exit", "handoff"])
        defer { first.shutdown() }
        let name = first.uniqueName("handoff")
        let (ids, holders, service) = try threeLeases(first, name)

        kill(first.process.processIdentifier, SIGTERM)
        #expect(eventually(timeout: 30) { !first.process.isRunning })
        first.process.waitUntilExit()
        #expect(first.process.terminationStatus == 0)
        #expect(holders.allSatisfy(isAlive))
        #expect(isAlive(service))
        #expect(try first.kernelCount(name) == 3)
        #expect(Files.kind("\(first.stateDir)/procrefd.sock") == nil)
        #expect(Files.kind("\(first.stateDir)/procrefd.pid") == nil)

        let second = try DaemonHarness(stateDir: first.stateDir)
        defer { second.shutdown() }
        second.adoptServiceName(name)
        let daemon = try second.unix.get("/v1/daemon").json
        #expect(daemon["singleton"] as? String == "available")
        #expect((daemon["adopted"] as? [String: Any])?["leases"] as? Int == 3)
        let stopped = try second.events().last { $0["kind"] as? String == "daemon.stopped" }
        #expect((stopped?["detail"] as? [String: Any])?["mode"] as? String == "handoff")
        try releaseAll(second, name, ids, service: service)
    }

    @Test("stop --drain ends every lease and leaves no process, semaphore set, socket or PID file")
    func drain() throws {
        let daemon = try DaemonHarness()
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("drain")
        let (ids, holders, service) = try threeLeases(daemon, name)

        let stop = try runProcrefd(["stop", "--drain", "--state-dir", daemon.stateDir, "--timeout", "30"])
        #expect(stop.code == 0, "\(stop.stderr)")
        #expect(!daemon.process.isRunning)
        #expect(holders.allSatisfy { !isAlive($0) })
        #expect(!groupRuns(service))
        #expect(daemon.semaphoreSetGone(name))
        #expect(Files.kind("\(daemon.stateDir)/procrefd.sock") == nil)
        #expect(Files.kind("\(daemon.stateDir)/procrefd.pid") == nil)
        #expect(try runProcrefd(["status", "--state-dir", daemon.stateDir]).code == 3)
        #expect(try runProcrefd(["pid", "--state-dir", daemon.stateDir]).code == 3)
        #expect(try runProcrefd(["stop", "--state-dir", daemon.stateDir]).code == 3)

        // The audit log, read directly, shows each lease revoked.
        let reader = try DaemonHarness(stateDir: daemon.stateDir)
        defer { reader.shutdown() }
        let revoked = try reader.events(service: name).filter { $0["kind"] as? String == "lease.revoked" }
        #expect(Set(revoked.compactMap { $0["lease"] as? String }) == Set(ids))
    }

    @Test("a second procrefd on the same state dir is refused; status and pid report the first")
    func singleton() throws {
        let daemon = try DaemonHarness()
        defer { daemon.shutdown() }
        let pid = daemon.process.processIdentifier
        let second = try runProcrefd(["serve", "--state-dir", daemon.stateDir, "--port", "0"], timeout: 30)
        #expect(second.code == 4)
        #expect(second.stderr.contains("already running (pid \(pid))"), "\(second.stderr)")
        let status = try runProcrefd(["status", "--state-dir", daemon.stateDir])
        #expect(status.code == 0)
        #expect(status.stdout.contains("pid: \(pid)"))
        let printed = try runProcrefd(["pid", "--state-dir", daemon.stateDir])
        #expect(printed.code == 0)
        #expect(printed.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == String(pid))
        #expect(try daemon.unix.get("/v1/health").status == 200)
    }

    @Test("what is not ours at the socket path is never deleted; bad state gets clear errors")
    func foreignFiles() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "not a socket\n".write(toFile: "\(dir)/procrefd.sock", atomically: false, encoding: .utf8)
        let refused = try runProcrefd(["serve", "--state-dir", dir, "--port", "0"], timeout: 30)
        #expect(refused.code == 1)
        #expect(refused.stderr.contains("is not a socket"), "\(refused.stderr)")
        #expect(try String(contentsOfFile: "\(dir)/procrefd.sock", encoding: .utf8) == "not a socket\n")

        let notADirectory = "\(dir)/file"
        try "x".write(toFile: notADirectory, atomically: false, encoding: .utf8)
        let badDir = try runProcrefd(["serve", "--state-dir", notADirectory, "--port", "0"], timeout: 30)
        #expect(badDir.code == 1)
        #expect(badDir.stderr.contains("state directory"), "\(badDir.stderr)")

        try "12ab\n".write(toFile: "\(dir)/procrefd.pid", atomically: false, encoding: .utf8)
        for command in ["pid", "status", "stop"] {
            let result = try runProcrefd([command, "--state-dir", dir])
            #expect(result.code == 1, "\(command)")
            #expect(result.stderr.contains("12ab"), "\(command): \(result.stderr)")
        }
        #expect(try String(contentsOfFile: "\(dir)/procrefd.pid", encoding: .utf8) == "12ab\n")
    }

    @Test("a TTL lease that expired while procrefd was down is recorded as expired; the orphan service is stopped")
    func expiredDuringOutage() throws {
        let first = try DaemonHarness()
        defer { first.shutdown() }
        let name = first.uniqueName("outage")
        _ = try first.defineSocketService(name)
        let grant = try first.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 500])
        let id = try #require(grant.json["id"] as? String)
        let service = Int32(try #require(try first.unix.get("/v1/services/\(name)").json["pid"] as? Int))
        first.crash()
        #expect(eventually { (try? first.kernelCount(name)) == 0 })
        #expect(isAlive(service))

        let second = try DaemonHarness(stateDir: first.stateDir)
        defer { second.shutdown() }
        second.adoptServiceName(name)
        let events = try second.events(service: name)
        let ended = events.last { $0["lease"] as? String == id }
        #expect(ended?["kind"] as? String == "lease.expired")
        let stopped = events.last { $0["kind"] as? String == "service.stopped" }
        #expect((stopped?["detail"] as? [String: Any])?["reason"] as? String == "orphan")
        #expect(!groupRuns(service))
        #expect(try second.unix.get("/v1/leases/\(id)").status == 404)
    }
}
