import Foundation
import Glibc
import ProcrefdClient
import Testing

/// SIGHUP applies `[security]`, `[limits]` and `[audit]` as well as services, and refuses a
/// change only a restart can make, naming the keys.
@Suite("Reloading settings")
struct ReloadSettingsTests {
    /// A daemon on `first`; `reload(text)` rewrites the file, sends SIGHUP and waits until
    /// the reload is recorded (reloaded or rejected); returns that event.
    final class Reloadable: @unchecked Sendable {
        let dir: String
        let path: String
        let daemon: DaemonHarness

        init(_ first: String) throws {
            dir = try makeTemporaryDirectory()
            path = "\(dir)/procrefd.toml"
            try first.write(toFile: path, atomically: true, encoding: .utf8)
            daemon = try DaemonHarness(stateDir: dir, extraArguments: ["--config", path])
        }

        func reload(_ text: String) throws -> [String: Any] {
            let seen = try daemon.events().filter { ($0["kind"] as? String)?.hasPrefix("daemon.config_") == true }.count
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            kill(daemon.process.processIdentifier, SIGHUP)
            var last: [String: Any] = [:]
            #expect(eventually {
                let reloads = (try? daemon.events().filter { ($0["kind"] as? String)?.hasPrefix("daemon.config_") == true }) ?? []
                last = reloads.last ?? [:]
                return reloads.count > seen
            })
            return last
        }

        func close() {
            daemon.shutdown()
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test("[security]: a user removed from api_users cannot define services after the reload, and a stored one stops starting")
    func security() throws {
        let box = try Reloadable("[security]\napi_users = [\"nobody\"]\n")
        defer { box.close() }
        let daemon = box.daemon
        let name = daemon.uniqueName("sec")
        #expect(try daemon.unix.send("PUT", "/v1/services/\(name)", json: ["start": ["sleep", "60"], "user": "nobody"]).status == 201)
        #expect(try daemon.anonymous.get("/v1/events").status == 401)
        let reloaded = try box.reload("[security]\napi_users = [\"daemon\"]\ntcp_open_reads = [\"events\"]\n")
        #expect(reloaded["kind"] as? String == "daemon.config_reloaded")
        #expect(((reloaded["detail"] as? [String: Any])?["settings_changed"] as? String)?.contains("security") == true)
        let refused = try daemon.unix.send("PUT", "/v1/services/\(name)-2", json: ["start": ["sleep", "60"], "user": "nobody"])
        #expect(refused.status == 403, "\(refused.text)")
        let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
        #expect(grant.status == 503, "\(grant.text)")
        #expect(grant.text.contains("api_users"), "\(grant.text)")
        #expect(try daemon.kernelCount(name) == 0)
        #expect(try daemon.anonymous.get("/v1/events").status == 200)  // the access policy followed too
    }

    @Test("[limits]: a lower per-service limit refuses the next acquire; a longer TTL range of waits applies")
    func limits() throws {
        let box = try Reloadable("[limits]\nmax_leases_per_service = 5\n")
        defer { box.close() }
        let daemon = box.daemon
        let name = daemon.uniqueName("lim")
        try daemon.defineSocketService(name)
        for _ in 0..<2 { #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201) }
        #expect(try box.reload("[limits]\nmax_leases_per_service = 2\n")["kind"] as? String == "daemon.config_reloaded")
        let refused = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
        #expect(refused.status == 429, "\(refused.text)")
        #expect(try daemon.kernelCount(name) == 2)
        #expect(try box.reload("[limits]\nmax_leases_per_service = 3\n")["kind"] as? String == "daemon.config_reloaded")
        #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
    }

    @Test("[audit]: retention turned on by a reload prunes")
    func audit() throws {
        let box = try Reloadable("[audit]\nprune_interval_ms = 100\nretention_max_events = 1000000\n")
        defer { box.close() }
        let daemon = box.daemon
        let lock = daemon.uniqueName("aud")
        #expect(try daemon.unix.send("PUT", "/v1/services/\(lock)", json: ["slots": 100]).status == 201)
        for _ in 0..<15 { #expect(try daemon.unix.send("POST", "/v1/services/\(lock)/leases", json: ["ttl_ms": 60_000]).status == 201) }
        #expect(try daemon.events().count > 15)
        #expect(try box.reload("[audit]\nprune_interval_ms = 100\nretention_max_events = 10\n")["kind"] as? String == "daemon.config_reloaded")
        #expect(eventually { (try? daemon.events().contains { $0["kind"] as? String == "audit.pruned" }) == true })
        #expect(eventually { ((try? daemon.events().count) ?? .max) <= 12 })
        // The chain still verifies from its new anchor.
        let verified = try runProcrefd(["events", "verify", "--state-dir", daemon.stateDir])
        #expect(verified.code == 0 && verified.stdout.contains(": ok") && !verified.stdout.contains("from anchor 0:"), "\(verified.stdout)")
    }

    @Test("a change only a restart can apply is refused, naming the keys; nothing of the file applies")
    func restartOnly() throws {
        let box = try Reloadable("durability = \"normal\"\n[limits]\nmax_leases_per_service = 5\n")
        defer { box.close() }
        let rejected = try box.reload("durability = \"full\"\nsocket_mode = \"0660\"\n[limits]\nmax_leases_per_service = 1\nconnection_limit = 50\n")
        #expect(rejected["kind"] as? String == "daemon.config_rejected")
        let detail = rejected["detail"] as? [String: Any]
        #expect(detail?["restart_keys"] as? String == "socket_mode,durability,limits.connection_limit", "\(String(describing: detail))")
        let name = box.daemon.uniqueName("rst")
        try box.daemon.defineSocketService(name)
        for _ in 0..<2 { #expect(try box.daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201) }
    }
}
