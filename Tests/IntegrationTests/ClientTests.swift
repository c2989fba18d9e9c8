import Foundation
import Glibc
import ProcrefdClient
import Testing

/// The command-line client (`procrefd run`, `lease`, `leases`, `services`, `service`,
/// `check-config`) against a real daemon.
@Suite("Client CLI")
struct ClientTests {
    /// The lease `run` took, found by its holder label, and how it ended.
    func runLease(_ daemon: DaemonHarness, _ name: String) throws -> (id: String, kinds: [String]) {
        let events = try daemon.events(service: name)
        let acquired = try #require(events.first { $0["kind"] as? String == "lease.acquired" })
        let id = try #require(acquired["lease"] as? String)
        return (id, events.filter { $0["lease"] as? String == id }.compactMap { $0["kind"] as? String })
    }

    @Test("run exits with the command's status, with the lease acquired before and released after")
    func runExitStatus() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("run")
            try daemon.defineSocketService(name)
            let result = try runProcrefd(["run", name, "--state-dir", daemon.stateDir, "--", "sh", "-c", "exit 3"])
            #expect(result.code == 3, "\(result.stderr)")
            let (_, kinds) = try runLease(daemon, name)
            #expect(kinds.first == "lease.acquired")
            #expect(kinds.last == "lease.released" || kinds.last == "lease.client_exited", "\(kinds)")
            #expect(try daemon.kernelCount(name) == 0)
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "stopped" })
        }
    }

    @Test("run: a command killed by SIGKILL ends run with 137 and the lease released")
    func runKilledCommand() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("runkill")
            try daemon.defineSocketService(name)
            let result = try runProcrefd(["run", name, "--state-dir", daemon.stateDir, "--", "sh", "-c", "kill -9 $$"])
            #expect(result.code == 137, "\(result.stderr)")
            let (_, kinds) = try runLease(daemon, name)
            #expect(kinds.last == "lease.released", "\(kinds)")
            #expect(try daemon.kernelCount(name) == 0)
        }
    }

    @Test("run passes a signal on to the command; the command sees the service while it runs")
    func runForwardsSignals() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("runsig")
            try daemon.defineSocketService(name)
            let marker = "\(daemon.stateDir)/\(name).running"
            let run = Process()
            run.executableURL = URL(fileURLWithPath: "\(binDirectory)/procrefd")
            run.arguments = ["run", name, "--state-dir", daemon.stateDir, "--ttl", "2s", "--",
                             "sh", "-c", "touch \(marker); exec sleep 60"]
            try run.run()
            defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
            #expect(eventually { FileManager.default.fileExists(atPath: marker) })
            #expect(try daemon.kernelCount(name) == 1)
            #expect(try daemon.service(name)["state"] as? String == "ready")
            // The TTL is kept alive while the command runs.
            let listed = try daemon.unix.get("/v1/leases?service=\(name)").json["leases"] as? [[String: Any]] ?? []
            #expect(listed.first?["client_pid"] as? Int == Int(run.processIdentifier))
            kill(run.processIdentifier, SIGTERM)
            #expect(eventually { !run.isRunning })
            run.waitUntilExit()
            #expect(run.terminationStatus == 128 + SIGTERM)
            #expect(try daemon.kernelCount(name) == 0)
            #expect(try runLease(daemon, name).kinds.last == "lease.released")
        }
    }

    @Test("run without a lease exits 125 and runs nothing")
    func runRefused() throws {
        try withDaemon { daemon in
            let marker = "\(daemon.stateDir)/ran"
            let result = try runProcrefd(["run", "no-such-service", "--state-dir", daemon.stateDir, "--", "touch", marker])
            #expect(result.code == 125)
            #expect(result.stderr.contains("Unknown Service"), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: marker))
        }
    }

    @Test("lease acquire prints the id alone; leases lists it; release ends it; errors have documented exit codes")
    func leaseCommands() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("cli")
            try daemon.defineSocketService(name)
            let dir = ["--state-dir", daemon.stateDir]
            let acquired = try runProcrefd(["lease", "acquire", name, "--ttl", "30s", "--holder", "cli"] + dir)
            #expect(acquired.code == 0, "\(acquired.stderr)")
            let id = acquired.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(id.hasPrefix("l_") && !id.contains(" "), "\(acquired.stdout)")
            #expect(try daemon.kernelCount(name) == 1)

            let listed = try runProcrefd(["leases", "--service", name] + dir)
            #expect(listed.code == 0)
            #expect(listed.stdout.contains(id) && listed.stdout.contains("cli"), "\(listed.stdout)")
            let json = try runProcrefd(["leases", "--json"] + dir)
            let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect((object?["leases"] as? [[String: Any]])?.contains { $0["id"] as? String == id } == true)
            #expect(try runProcrefd(["lease", "keepalive", id] + dir).code == 0)

            #expect(try runProcrefd(["lease", "release", id] + dir).code == 0)
            #expect(try daemon.kernelCount(name) == 0)
            let again = try runProcrefd(["lease", "release", id] + dir)
            #expect(again.code == 4)
            #expect(again.stderr.contains("Unknown Lease"), "\(again.stderr)")
            let unreachable = try runProcrefd(["leases", "--state-dir", "\(daemon.stateDir)/nowhere"])
            #expect(unreachable.code == 3, "\(unreachable.stderr)")
        }
    }

    @Test("over TCP, changes need the token")
    func tcpNeedsToken() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("tcp")
            try daemon.defineSocketService(name)
            let url = ["--url", "http://127.0.0.1:\(daemon.port)"]
            let refused = try runProcrefd(["lease", "acquire", name] + url)
            #expect(refused.code == 5, "\(refused.stderr)")
            #expect(try daemon.kernelCount(name) == 0)
            let granted = try runProcrefd(["lease", "acquire", name, "--token", daemon.token] + url)
            #expect(granted.code == 0, "\(granted.stderr)")
            #expect(try daemon.kernelCount(name) == 1)
            // --token-file keeps the secret out of `ps`.
            let fromFile = try runProcrefd(["lease", "acquire", name, "--token-file", "\(daemon.stateDir)/token"] + url)
            #expect(fromFile.code == 0, "\(fromFile.stderr)")
            #expect(try daemon.kernelCount(name) == 2)
            let readOnly = try runProcrefd(["lease", "acquire", name, "--token-file", "\(daemon.stateDir)/read-token"] + url)
            #expect(readOnly.code == 5, "\(readOnly.stderr)")
            #expect(try runProcrefd(["lease", "acquire", name, "--token-file", "\(daemon.stateDir)/missing"] + url).code != 0)
            #expect(try daemon.kernelCount(name) == 2)
        }
    }

    @Test("a huge --ttl is a usage error, not a crash; holder labels with terminal escapes are printed escaped")
    func hostileInput() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("esc")
            try daemon.defineSocketService(name)
            let dir = ["--state-dir", daemon.stateDir]
            for ttl in ["1e300s", "inf", "nan", "99999999999999999999h"] {
                let huge = try runProcrefd(["lease", "acquire", name, "--ttl", ttl] + dir)
                #expect(huge.code == 64, "\(ttl): \(huge.code) \(huge.stderr)")
                #expect(huge.stderr.contains("ttl"), "\(huge.stderr)")
            }
            #expect(try daemon.kernelCount(name) == 0)
            let label = "job\u{1B}]0;owned\u{07}\u{1B}[2J"
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000, "holder": label]).status == 201)
            let listed = try runProcrefd(["leases", "--service", name] + dir)
            #expect(listed.code == 0)
            #expect(!listed.stdout.contains("\u{1B}") && !listed.stdout.contains("\u{07}"), "\(listed.stdout.debugDescription)")
            #expect(listed.stdout.contains("job\\u{1B}]0;owned\\u{7}\\u{1B}[2J"), "\(listed.stdout)")
        }
    }

    @Test("services, service define (TOML), show, remove (refused while leased)")
    func serviceCommands() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("def")
            let dir = ["--state-dir", daemon.stateDir]
            let socket = "\(daemon.stateDir)/\(name).svc.sock"
            let file = "\(daemon.stateDir)/\(name).toml"
            try """
                start = ["python3", "\(testServiceScript)", "\(socket)"]
                health = { unix = "\(socket)", timeout_ms = 500 }
                stop_timeout_ms = 2000
                """.write(toFile: file, atomically: true, encoding: .utf8)
            let defined = try runProcrefd(["service", "define", name, "--file", file] + dir)
            #expect(defined.code == 0, "\(defined.stderr)")
            let table = try runProcrefd(["services"] + dir)
            #expect(table.stdout.contains("NAME") && table.stdout.contains("SINCE") && table.stdout.contains("RESTARTS") && table.stdout.contains(name), "\(table.stdout)")
            let show = try runProcrefd(["service", "show", name] + dir)
            #expect(show.stdout.contains("state: stopped"), "\(show.stdout)")

            let lease = try runProcrefd(["lease", "acquire", name, "--ttl", "60s"] + dir)
            #expect(lease.code == 0, "\(lease.stderr)")
            let refused = try runProcrefd(["service", "remove", name] + dir)
            #expect(refused.code == 5, "\(refused.stderr)")
            #expect(try daemon.service(name)["state"] as? String == "ready")
            #expect(try runProcrefd(["lease", "release", lease.stdout.trimmingCharacters(in: .whitespacesAndNewlines)] + dir).code == 0)
            let removed = try runProcrefd(["service", "remove", name] + dir)
            #expect(removed.code == 0, "\(removed.stderr)")
            #expect(try daemon.unix.get("/v1/services/\(name)").status == 404)
            #expect(daemon.semaphoreSetGone(name))
            #expect(try daemon.eventKinds(service: name).last == "service.removed")
        }
    }

    @Test("check-config: 0 for a good file, 1 with the error for a bad one")
    func checkConfig() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[services.web]\nstart = [\"true\"]\n".write(toFile: "\(dir)/good.toml", atomically: true, encoding: .utf8)
        let good = try runProcrefd(["check-config", "\(dir)/good.toml"])
        #expect(good.code == 0, "\(good.stderr)")
        try "[services.web]\nstart = []\n".write(toFile: "\(dir)/bad.toml", atomically: true, encoding: .utf8)
        let bad = try runProcrefd(["check-config", "\(dir)/bad.toml"])
        #expect(bad.code == 1)
        #expect(bad.stderr.contains("bad.toml") && bad.stderr.contains("start"), "\(bad.stderr)")
    }
}

/// `procrefd logs` and `GET /v1/services/{name}/logs`.
@Suite("Service logs")
struct ServiceLogsTests {
    @Test("logs -n prints the last lines; logs -f follows what the service writes next; unknown service → 4")
    func logs() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("logs")
            let socket = "\(daemon.stateDir)/\(name).svc.sock"
            let start = "echo first-$$; echo second-$$; exec python3 \(testServiceScript) \(socket)"
            let define = try daemon.unix.send("PUT", "/v1/services/\(name)", json: [
                "start": ["sh", "-c", start], "health": ["unix": socket, "timeout_ms": 500],
            ])
            #expect(define.status == 201, "\(define.text)")

            // Following from before the service's first start: the file does not exist yet.
            let follower = try BackgroundProcrefd(["logs", name, "-f", "--state-dir", daemon.stateDir])
            defer { follower.stop() }
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
            #expect(eventually { follower.output().contains("first-") && follower.output().contains("second-") }, "\(follower.output())")

            let last = try runProcrefd(["logs", name, "-n", "1", "--state-dir", daemon.stateDir])
            #expect(last.code == 0)
            #expect(last.stdout.hasPrefix("second-") && !last.stdout.contains("first-"), "\(last.stdout)")
            let api = try daemon.unix.get("/v1/services/\(name)/logs?tail=2")
            #expect(api.status == 200 && api.text.contains("first-") && api.text.contains("second-"))
            #expect(try daemon.unix.get("/v1/services/\(name)/logs?tail=-1").status == 422)
            let unknown = try runProcrefd(["logs", "no-such-service", "--state-dir", daemon.stateDir])
            #expect(unknown.code == 4, "\(unknown.stderr)")
        }
    }
}

/// Following the audit log from its end, in the API and offline.
@Suite("Events from the end")
struct EventsFromTheEndTests {
    @Test("after=now starts at the newest event; procrefd events --follow shows the last lines, then new events; offline pages have next_before")
    func followFromTheEnd() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("tail")
            try daemon.defineSocketService(name)
            let newest = try #require(try daemon.events().last?["id"] as? Int)
            let page = try daemon.unix.get("/v1/events?after=now").json
            #expect((page["events"] as? [Any])?.isEmpty == true)
            #expect(page["next_after"] as? Int == newest)

            let follower = try BackgroundProcrefd(["events", "--state-dir", daemon.stateDir, "--follow", "--lines", "1", "--format", "ndjson"])
            defer { follower.stop() }
            func ids() -> [Int] {
                follower.output().split(separator: "\n").compactMap {
                    (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["id"] as? Int
                }
            }
            #expect(eventually { ids() == [newest] }, "\(follower.output())")
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(grant.status == 201)
            let after = try daemon.events().compactMap { $0["id"] as? Int }.filter { $0 > newest }
            #expect(!after.isEmpty)
            #expect(eventually { ids() == [newest] + after }, "\(follower.output())")

            let offline = try runProcrefd(["events", "--state-dir", daemon.stateDir, "--format", "json", "--order", "desc", "--limit", "1"])
            let object = try JSONSerialization.jsonObject(with: Data(offline.stdout.utf8)) as? [String: Any]
            #expect(object?.keys.contains("next_before") == true, "\(offline.stdout)")
            #expect(object?["next_before"] as? Int == (object?["events"] as? [[String: Any]])?.first?["id"] as? Int)
        }
    }
}
