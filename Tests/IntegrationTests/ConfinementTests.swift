import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// `api_users` and `api_programs` confine whoever defines services over the API: no root
/// through a definition, its health check, its environment or its PATH.
@Suite("API confinement")
struct ConfinementTests {
    /// A daemon reading `config`, on `stateDir` (which the caller then owns).
    static func withConfig(_ config: String, stateDir: String, _ body: (DaemonHarness) throws -> Void) throws {
        let configDir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: configDir) }
        try config.write(toFile: "\(configDir)/procrefd.toml", atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(stateDir: stateDir, extraArguments: ["--config", "\(configDir)/procrefd.toml"])
        defer { daemon.shutdown() }
        try body(daemon)
    }

    @Test("confined: no user means procrefd's own, refused unless listed; code-loading env keys are 422; a lock needs no user")
    func confinedDefinitions() throws {
        try withDaemon(config: "[security]\napi_users = [\"nobody\"]\napi_env_allow = [\"LD_LIBRARY_PATH\"]\n") { daemon throws in
            let eventsBefore = try daemon.events().count
            let noUser = try daemon.unix.send("PUT", "/v1/services/conf-a", json: ["start": ["sleep", "60"]])
            #expect(noUser.status == 403, "\(noUser.text)")
            #expect((noUser.json["detail"] as? String)?.contains("procrefd's own user") == true, "\(noUser.text)")
            #expect(try daemon.unix.send("PUT", "/v1/services/conf-b", json: ["start": ["sleep", "60"], "user": "root"]).status == 403)
            for key in ["LD_PRELOAD", "LD_AUDIT", "GCONV_PATH", "PYTHONSTARTUP", "NODE_OPTIONS", "BASH_ENV", "MALLOC_CHECK_", "PERL5OPT"] {
                let refused = try daemon.unix.send(
                    "PUT", "/v1/services/conf-c", json: ["start": ["sleep", "60"], "user": "nobody", "env": [key: "/tmp/evil.so"]])
                #expect(refused.status == 422, "\(key): \(refused.text)")
                #expect((refused.json["detail"] as? String)?.contains("env.\(key)") == true, "\(refused.text)")
            }
            #expect(try daemon.events().count == eventsBefore)
            #expect(try daemon.unix.get("/v1/services/conf-c").status == 404)
            let allowed = try daemon.unix.send(
                "PUT", "/v1/services/conf-d", json: ["start": ["sleep", "60"], "user": "nobody", "env": ["LD_LIBRARY_PATH": "/opt/lib", "MODE": "x"]])
            #expect(allowed.status == 201, "\(allowed.text)")
            daemon.adoptServiceName("conf-d")
            let lock = try daemon.unix.send("PUT", "/v1/services/conf-lock", json: ["slots": 2])
            #expect(lock.status == 201, "\(lock.text)")
            daemon.adoptServiceName("conf-lock")
        }
    }

    @Test("unconfined (no api_users, no api_programs): the API admin defines as before")
    func unconfined() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("free")
            let defined = try daemon.unix.send("PUT", "/v1/services/\(name)", json: ["start": ["sleep", "60"], "env": ["LD_LIBRARY_PATH": "/x"]])
            #expect(defined.status == 201, "\(defined.text)")
        }
    }

    @Test("argv[0] is resolved once, stored absolute, and exec'd by that path: a program dropped later into PATH is not run")
    func programResolvedOnce() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("path")
            let early = try makeTemporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: early) }
            let socket = "\(daemon.stateDir)/\(name).svc.sock"
            let defined = try daemon.unix.send("PUT", "/v1/services/\(name)", json: [
                "start": ["python3", testServiceScript, socket], "env": ["PATH": "\(early):/usr/local/bin:/usr/bin:/bin"],
                "health": ["unix": socket, "timeout_ms": 500], "ready_timeout_ms": 10_000,
            ])
            #expect(defined.status == 201, "\(defined.text)")
            let program = ((defined.json["definition"] as? [String: Any])?["start"] as? [String])?.first ?? ""
            #expect(program.hasPrefix("/") && program.hasSuffix("/python3"), "\(program)")
            // Dropped into the first PATH directory after the definition was accepted.
            let marker = "\(early)/ran"
            try "#!/bin/sh\ntouch \(marker)\nexit 1\n".write(toFile: "\(early)/python3", atomically: false, encoding: .utf8)
            chmod("\(early)/python3", 0o755)
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
            #expect(Files.kind(marker) == nil)
            let missing = try daemon.unix.send("PUT", "/v1/services/\(name)-m", json: ["start": ["no-such-program-here"]])
            #expect(missing.status == 422)
            #expect((missing.json["detail"] as? String)?.contains("no program no-such-program-here") == true, "\(missing.text)")
        }
    }

    @Test("an exec health check runs as the service's user, in its cgroup")
    func execHealthAsService() throws {
        try withDaemon(config: "[security]\napi_users = [\"nobody\"]\n") { daemon throws in
            let nobody = try #require(Accounts.user("nobody"))
            let cgroup = try daemon.unix.get("/v1/daemon").json["service_cgroup"] as? String
            let name = daemon.uniqueName("hcuser")
            // Healthy only when run as nobody, and (with cgroups) inside procrefd's service cgroups.
            let check = "import os,sys; ok = os.geteuid() == \(nobody.uid) and (\(cgroup == nil ? "True" : "'procrefd-' in open('/proc/self/cgroup').read()")); sys.exit(0 if ok else 1)"
            let defined = try daemon.unix.send("PUT", "/v1/services/\(name)", json: [
                "start": ["sleep", "60"], "user": "nobody", "health": ["exec": ["/usr/bin/python3", "-c", check], "timeout_ms": 5_000],
                "ready_timeout_ms": 10_000,
            ])
            #expect(defined.status == 201, "\(defined.text)")
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            let log = try daemon.unix.get("/v1/services/\(name)/logs").text
            #expect(grant.status == 201, "\(grant.text) \(log)")
            #expect(try daemon.service(name)["state"] as? String == "ready")
        }
    }

    @Test("stored API definitions are checked again at start: one that breaks the rules now does not start, and says why")
    func recheckedAtStart() throws {
        let stateDir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        let name = "rechk-\(UUID().uuidString.prefix(8).lowercased())"
        // Defined while unconfined: no user, so it would run as root.
        // Both daemons run on a state dir they do not own: this test removes it and the set.
        let first = try DaemonHarness(stateDir: stateDir)
        #expect(try first.unix.send("PUT", "/v1/services/\(name)", json: ["start": ["sleep", "60"]]).status == 201)
        first.adoptServiceName(name)
        let set = first.semaphoreSet(name)
        first.shutdown()
        defer { try? set?.remove() }
        try Self.withConfig("[security]\napi_users = [\"nobody\"]\n", stateDir: stateDir) { daemon in
            daemon.adoptServiceName(name)
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(grant.status == 503, "\(grant.text)")
            #expect(grant.text.contains("api_users"), "\(grant.text)")
            #expect(try daemon.kernelCount(name) == 0)
            let failed = try daemon.events(service: name).last { $0["kind"] as? String == "service.start_failed" }
            #expect(((failed?["detail"] as? [String: Any])?["reason"] as? String)?.contains("api_users") == true, "\(String(describing: failed))")
            #expect(try daemon.service(name)["pid"] is NSNull)
        }
    }
}
