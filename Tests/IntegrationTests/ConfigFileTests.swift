import Foundation
import Glibc
import ProcrefdClient
import Testing

/// `serve --config FILE`: config services, API refusal, SIGHUP reload, bad files.
@Suite("Config file")
struct ConfigFileTests {
    func service(_ name: String, socket: String) -> String {
        """
        [services.\(name)]
        start = ["python3", "\(testServiceScript)", "\(socket)"]
        health = { unix = "\(socket)", timeout_ms = 500 }
        stop_timeout_ms = 2000

        """
    }

    @Test("config services appear, cannot be replaced over the API, and follow SIGHUP reloads")
    func reload() throws {
        let dir = try makeTemporaryDirectory()
        let configPath = "\(dir)/procrefd.toml"
        let a = "cfg-a-\(UUID().uuidString.prefix(6).lowercased())"
        let b = "cfg-b-\(UUID().uuidString.prefix(6).lowercased())"
        try service(a, socket: "\(dir)/\(a).sock").write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(stateDir: dir, extraArguments: ["--config", configPath])
        defer {
            daemon.shutdown()
            for name in [a, b] { daemon.adoptServiceName(name) }
            try? FileManager.default.removeItem(atPath: dir)
        }
        daemon.adoptServiceName(a)
        daemon.adoptServiceName(b)
        #expect(try daemon.service(a)["source"] as? String == "config")
        let replace = try daemon.unix.send("PUT", "/v1/services/\(a)", json: ["start": ["true"]])
        #expect(replace.status == 409)
        let lease = try daemon.unix.send("POST", "/v1/services/\(a)/leases", json: ["ttl_ms": 60_000])
        #expect(lease.status == 201)

        // Add b, drop a (leased: it stays until released).
        try service(b, socket: "\(dir)/\(b).sock").write(toFile: configPath, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(eventually { (try? daemon.unix.get("/v1/services/\(b)").status) == 200 })
        #expect(try daemon.unix.get("/v1/services/\(a)").status == 200)
        // Removed: no new lease, and nothing changes in the kernel or the log.
        let eventsBefore = try daemon.events(service: a).count
        let refused = try daemon.unix.send("POST", "/v1/services/\(a)/leases", json: ["ttl_ms": 60_000])
        #expect(refused.status == 409, "\(refused.text)")
        #expect(refused.json["type"] as? String == "urn:procrefd:problem:service-removing")
        #expect(try daemon.kernelCount(a) == 1)
        #expect(try daemon.events(service: a).count == eventsBefore)
        _ = try daemon.unix.send("DELETE", "/v1/leases/\(lease.json["id"] as? String ?? "")")
        #expect(eventually { (try? daemon.unix.get("/v1/services/\(a)").status) == 404 })
        #expect(try daemon.eventKinds(service: a).last == "service.removed")

        // A bad file is rejected and the running config stays.
        try "[services.\(b)]\nstart = []\n".write(toFile: configPath, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(eventually { (try? daemon.events().contains { $0["kind"] as? String == "daemon.config_rejected" }) == true })
        #expect(try daemon.unix.get("/v1/services/\(b)").status == 200)
        let rejected = try daemon.events().last { $0["kind"] as? String == "daemon.config_rejected" }
        #expect(((rejected?["detail"] as? [String: Any])?["error"] as? String)?.contains("start") == true)
    }

    @Test("a changed linger_ms applies to the running instance at its next release")
    func lingerChangeApplies() throws {
        let dir = try makeTemporaryDirectory()
        let configPath = "\(dir)/procrefd.toml"
        let name = "cfg-l-\(UUID().uuidString.prefix(6).lowercased())"
        try service(name, socket: "\(dir)/\(name).sock").write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(stateDir: dir, extraArguments: ["--config", configPath])
        defer {
            daemon.shutdown()
            try? FileManager.default.removeItem(atPath: dir)
        }
        daemon.adoptServiceName(name)
        let lease = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
        #expect(lease.status == 201)
        let pid = try #require(try daemon.service(name)["pid"] as? Int)

        try (service(name, socket: "\(dir)/\(name).sock") + "linger_ms = 60000\n")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(eventually { (try? daemon.events().contains { $0["kind"] as? String == "daemon.config_reloaded" }) == true })
        let release = try daemon.unix.send("DELETE", "/v1/leases/\(lease.json["id"] as? String ?? "")")
        #expect(release.status == 200)
        #expect(release.json["service_stopped"] as? Bool == false)
        let status = try daemon.service(name)
        #expect(status["linger_until"] is String)
        #expect(status["pid"] as? Int == pid)
        #expect(isAlive(Int32(pid)))
    }

    @Test("a bad config file stops start-up with a clear message")
    func badFileAtStart() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "port = \"many\"\n".write(toFile: "\(dir)/bad.toml", atomically: true, encoding: .utf8)
        let result = try runProcrefd(["serve", "--state-dir", dir, "--config", "\(dir)/bad.toml", "--port", "0"], timeout: 30)
        #expect(result.code == 1)
        #expect(result.stderr.contains("bad.toml"), "\(result.stderr)")
        #expect(result.stderr.contains("port"), "\(result.stderr)")
    }
}
