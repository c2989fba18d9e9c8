import Foundation
import Glibc
import ProcrefdClient
import Testing

/// pre_start, post_ready and stop_command, run by a real procrefd: exit codes, time-outs,
/// output in the service's log, and `service.hook` records.
@Suite("Service hooks")
struct ServiceHooksTests {
    func define(_ daemon: DaemonHarness, _ name: String, _ fields: [String: Any]) throws {
        var body: [String: Any] = ["start": ["sleep", "300"], "ready_timeout_ms": 5_000, "stop_timeout_ms": 2_000]
        body.merge(fields) { $1 }
        let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: body)
        try #require(response.status == 201, "\(response.text)")
    }

    func acquire(_ daemon: DaemonHarness, _ name: String) throws -> TestHTTPClient.Response {
        try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
    }

    func hooks(_ daemon: DaemonHarness, _ name: String) throws -> [[String: Any]] {
        try daemon.events(service: name).filter { $0["kind"] as? String == "service.hook" }.compactMap { $0["detail"] as? [String: Any] }
    }

    func log(_ daemon: DaemonHarness, _ name: String) -> String {
        (try? String(contentsOfFile: "\(daemon.stateDir)/logs/\(name).log", encoding: .utf8)) ?? ""
    }

    @Test("pre_start runs to exit 0 before the main process starts, its output in the log; one that fails fails the start with its output, and the main process never runs")
    func preStart() throws {
        try withDaemon { daemon in
            let good = daemon.uniqueName("pre")
            try define(daemon, good, ["pre_start": ["sh", "-c", "echo migrated"]])
            #expect(try acquire(daemon, good).status == 201)
            let kinds = try daemon.eventKinds(service: good)
            let hookAt = try #require(kinds.firstIndex(of: "service.hook")), startingAt = try #require(kinds.firstIndex(of: "service.starting"))
            #expect(hookAt < startingAt)
            let recorded = try #require(try hooks(daemon, good).first)
            #expect(recorded["hook"] as? String == "pre_start")
            #expect(recorded["status"] as? String == "exit code 0")
            #expect(log(daemon, good).contains("migrated"))

            let bad = daemon.uniqueName("pre")
            try define(daemon, bad, ["pre_start": ["sh", "-c", "echo migration failed: no table >&2; exit 3"], "restart_limit": 5])
            let refused = try acquire(daemon, bad)
            #expect(refused.status == 503)
            let detail = refused.json["detail"] as? String ?? ""
            #expect(detail.contains("pre_start exit code 3"), "\(detail)")
            #expect(detail.contains("migration failed: no table"), "\(detail)")
            #expect(try !daemon.eventKinds(service: bad).contains("service.starting"))
            #expect(try daemon.service(bad)["state"] as? String == "stopped")
            #expect(try daemon.kernelCount(bad) == 0)
        }
    }

    @Test("a pre_start past ready_timeout_ms is killed, and the start fails naming the time-out")
    func preStartTimeout() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("pre")
            let marker = "\(daemon.stateDir)/\(name)-hook"
            try define(daemon, name, ["pre_start": ["sh", "-c", "exec sleep 30 # \(marker)"], "ready_timeout_ms": 500])
            let refused = try acquire(daemon, name)
            #expect(refused.status == 503)
            // The start's deadline and the hook's own bound are the same 500 ms: either ends it.
            let detail = refused.json["detail"] as? String ?? ""
            #expect(detail.contains("pre_start did not finish within 500 ms") || detail.contains("pre_start timeout after 500 ms"), "\(detail)")
            // Ended by its own bound, or by the failed start's teardown (TERM, then KILL).
            #expect(eventually { ((try? hooks(daemon, name).first?["status"] as? String) ?? "exit code 0") != "exit code 0" })
            #expect(eventually { pidsMentioning(marker).isEmpty })
        }
    }

    @Test("post_ready runs once the service is up, and the acquire is answered after it; one that fails fails the start and stops the service")
    func postReady() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("post")
            let warmed = "\(daemon.stateDir)/\(name).warm"
            try define(daemon, name, ["post_ready": ["sh", "-c", "sleep 0.3; echo warm > \(warmed); echo warmed up"]])
            #expect(try acquire(daemon, name).status == 201)
            #expect(FileManager.default.fileExists(atPath: warmed))  // before the answer, not after
            #expect(try hooks(daemon, name).first?["hook"] as? String == "post_ready")
            #expect(log(daemon, name).contains("warmed up"))

            let bad = daemon.uniqueName("post")
            try define(daemon, bad, ["post_ready": ["sh", "-c", "echo cold >&2; exit 1"], "restart_limit": 5])
            let refused = try acquire(daemon, bad)
            #expect(refused.status == 503)
            #expect((refused.json["detail"] as? String ?? "").contains("post_ready exit code 1: cold"))
            #expect(eventually { (try? daemon.service(bad)["state"] as? String) == "stopped" })
            #expect(try daemon.service(bad)["pid"] is NSNull)
        }
    }

    @Test("stop_command stops the service instead of the signal; one that hangs is killed at stop_timeout_ms with the service")
    func stopCommand() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("stopcmd")
            let pidFile = "\(daemon.stateDir)/\(name).pid"
            // Ignores SIGTERM: only the stop command's SIGUSR1 ends it in time.
            let main = ["python3", "-c", "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                + "signal.signal(signal.SIGUSR1, lambda *_: sys.exit(0)); open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)", pidFile]
            try define(daemon, name, ["start": main, "stop_command": ["sh", "-c", "echo stop-ran; kill -USR1 $(cat \(pidFile))"], "stop_timeout_ms": 5_000])
            let lease = try acquire(daemon, name)
            let id = try #require(lease.json["id"] as? String)
            #expect(eventually { FileManager.default.fileExists(atPath: pidFile) })
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "stopped" })
            let stopped = try #require(try daemon.events(service: name).last { $0["kind"] as? String == "service.stopped" }?["detail"] as? [String: Any])
            #expect(stopped["signal"] as? String == "none (stop_command)")
            #expect(try hooks(daemon, name).first?["status"] as? String == "exit code 0")
            #expect(log(daemon, name).contains("stop-ran"))

            let stuck = daemon.uniqueName("stopcmd")
            let marker = "\(daemon.stateDir)/\(stuck)-stop"
            try define(daemon, stuck, ["stop_command": ["sh", "-c", "exec sleep 60 # \(marker)"], "stop_timeout_ms": 500])
            let held = try #require(try acquire(daemon, stuck).json["id"] as? String)
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(held)").status == 200)
            #expect(eventually { (try? daemon.service(stuck)["state"] as? String) == "stopped" })
            let killed = try #require(try daemon.events(service: stuck).last { $0["kind"] as? String == "service.stopped" }?["detail"] as? [String: Any])
            #expect(killed["signal"] as? String == "KILL")
            #expect(eventually { pidsMentioning(marker).isEmpty })
        }
    }

    @Test("hooks are checked when the definition is accepted: an empty argv, or a program not in PATH, is a 422 naming the hook")
    func badHooks() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("hook")
            for (body, field) in [(["pre_start": [String]()], "pre_start"), (["stop_command": ["no-such-program-here"]], "stop_command"),
                                  (["post_ready": [""]], "post_ready")] {
                let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: (["start": ["sleep", "1"]] as [String: Any]).merging(body) { $1 })
                #expect(response.status == 422, "\(body)")
                #expect(response.text.contains(field), "\(response.text)")
            }
            #expect(try daemon.unix.get("/v1/services/\(name)").status == 404)
        }
    }
}
