import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// procref's callbacks as a supervisor: health on every later acquire, recovery, crash
/// restarts with backoff, the failed state, linger, the stop policy, admin restart.
@Suite("Supervision")
struct SupervisionTests {
    func acquire(_ daemon: DaemonHarness, _ name: String, ttl: Int = 120_000) throws -> TestHTTPClient.Response {
        try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": ttl])
    }

    func kinds(_ daemon: DaemonHarness, _ name: String, _ kind: String) throws -> Int {
        try daemon.eventKinds(service: name).filter { $0 == kind }.count
    }

    @Test("a leased service killed with SIGKILL is restarted; service.exited and service.ready recorded")
    func crashRestart() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("crash")
            try daemon.defineSocketService(name, extra: ["restart_backoff_ms": 50])
            #expect(try acquire(daemon, name).status == 201)
            let startedAt = Date()
            let first = try #require(try daemon.service(name)["pid"] as? Int)
            kill(Int32(first), SIGKILL)
            #expect(eventually {
                let now = try? daemon.service(name)
                return now?["state"] as? String == "ready" && (now?["pid"] as? Int).map { $0 != first } == true
            })
            let kinds = try daemon.eventKinds(service: name)
            #expect(kinds.contains("service.exited"))
            #expect(kinds.filter { $0 == "service.ready" }.count == 2)
            let exited = try daemon.events(service: name).first { $0["kind"] as? String == "service.exited" }
            #expect(((exited?["detail"] as? [String: Any])?["exit"] as? String)?.contains("SIGKILL") == true)
            #expect(try daemon.kernelCount(name) == 1)

            // Status says since when it is ready, how often it restarted, and its last health.
            let status = try daemon.service(name)
            #expect(status["restarts"] as? Int == 1)
            let since = try #require((status["state_since"] as? String).flatMap { ISO8601DateFormatter.withFractions.date(from: $0) })
            #expect(since > startedAt && since <= Date().addingTimeInterval(1))
            let scrape = try daemon.unix.get("/v1/status").json["services"] as? [[String: Any]] ?? []
            let entry = scrape.first { $0["name"] as? String == name }
            #expect(entry?["restarts"] as? Int == 1)
            #expect(entry?["state_since"] as? String == status["state_since"] as? String)
            #expect(entry?["last_health"] as? String == "ok")
        }
    }

    @Test("a service that keeps dying reaches failed after the limit; acquires get 503 until reset")
    func failedAfterLimit() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("dying")
            let flag = "\(daemon.stateDir)/\(name).die"
            _ = FileManager.default.createFile(atPath: flag, contents: Data())
            try daemon.defineSocketService(name, extra: ["restart_backoff_ms": 20, "restart_limit": 2, "restart_window_ms": 60_000],
                                       arguments: ["--die-after", "0.2", "--die-flag", flag])
            #expect(try acquire(daemon, name).status == 201)
            #expect(eventually(timeout: 20) { (try? daemon.service(name)["state"] as? String) == "failed" })
            let status = try daemon.service(name)
            #expect((status["failure_reason"] as? String)?.contains("2 restarts") == true)
            #expect(try kinds(daemon, name, "service.failed") == 1)

            let refused = try acquire(daemon, name)
            #expect(refused.status == 503)
            #expect(refused.json["type"] as? String == "urn:procrefd:problem:service-failed")
            #expect(try daemon.kernelCount(name) == 1)

            try FileManager.default.removeItem(atPath: flag)
            let reset = try daemon.unix.send("POST", "/v1/services/\(name)/reset")
            #expect(reset.status == 200, "\(reset.text)")
            #expect(reset.json["state"] as? String == "ready")
            #expect(try acquire(daemon, name).status == 201)
            #expect(try daemon.kernelCount(name) == 2)
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/reset").status == 409)
        }
    }

    @Test("starts that keep failing put the service in failed: later acquires get a quick 503")
    func failedStarts() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("nostart")
            let define = try daemon.unix.send("PUT", "/v1/services/\(name)", json: [
                "start": ["sleep", "30", daemon.stateDir], "restart_limit": 1, "ready_timeout_ms": 300, "stop_timeout_ms": 1000,
                "health": ["unix": "\(daemon.stateDir)/never.sock", "timeout_ms": 100],
            ])
            #expect(define.status == 201)
            for _ in 0..<2 {
                let attempt = try acquire(daemon, name)
                #expect(attempt.status == 503)
                #expect(attempt.json["type"] as? String == "urn:procrefd:problem:service-start-failed")
            }
            #expect(try daemon.service(name)["state"] as? String == "failed")
            let refused = try acquire(daemon, name)
            #expect(refused.status == 503)
            #expect(refused.json["type"] as? String == "urn:procrefd:problem:service-failed")
            #expect(try kinds(daemon, name, "service.starting") == 2)
            #expect(try kinds(daemon, name, "service.failed") == 1)
            #expect(try daemon.kernelCount(name) == 0)
        }
    }

    @Test("a start failure carries the service's last output and the log's path, in the 503 and in service.start_failed")
    func startFailureOutput() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("refuses")
            let define = try daemon.unix.send("PUT", "/v1/services/\(name)", json: [
                "start": ["sh", "-c", "echo an earlier run >&2; echo \"can't run as root without -u\" >&2; exit 64"],
                "restart_limit": 5, "ready_timeout_ms": 5_000,
                "health": ["unix": "\(daemon.stateDir)/never.sock", "timeout_ms": 100],
            ])
            #expect(define.status == 201)
            let attempt = try acquire(daemon, name)
            #expect(attempt.status == 503)
            let detail = attempt.json["detail"] as? String ?? ""
            #expect(detail.contains("can't run as root without -u"), "\(detail)")
            #expect(detail.contains("\(daemon.stateDir)/logs/\(name).log"), "\(detail)")
            let failed = try daemon.events(service: name).last { $0["kind"] as? String == "service.start_failed" }
            let recorded = failed?["detail"] as? [String: Any]
            #expect((recorded?["log_tail"] as? String)?.hasSuffix("can't run as root without -u") == true, "\(String(describing: recorded))")
            #expect(recorded?["log"] as? String == "\(daemon.stateDir)/logs/\(name).log")
            // Only this start's output: the second attempt's tail holds its own two lines, not four.
            _ = try acquire(daemon, name)
            let second = try daemon.events(service: name).last { $0["kind"] as? String == "service.start_failed" }
            let tail = (second?["detail"] as? [String: Any])?["log_tail"] as? String ?? ""
            #expect(tail.components(separatedBy: "\n").count == 2, "\(tail)")
        }
    }

    @Test("an acquire on an unhealthy service triggers exactly one recovery")
    func unhealthyRecovery() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("sick")
            let flag = "\(daemon.stateDir)/\(name).close"
            // fresh_ms 0: the next acquire probes, however soon it comes.
            let socket = "\(daemon.stateDir)/\(name).svc.sock"
            try daemon.defineSocketService(
                name, extra: ["health": ["unix": socket, "timeout_ms": 500, "fresh_ms": 0]], arguments: ["--close-flag", flag])
            #expect(try acquire(daemon, name).status == 201)
            let first = try #require(try daemon.service(name)["pid"] as? Int)
            _ = FileManager.default.createFile(atPath: flag, contents: Data())
            #expect(eventually { !FileManager.default.fileExists(atPath: socket) })
            #expect(isAlive(Int32(first)))

            let second = try acquire(daemon, name)
            #expect(second.status == 201, "\(second.text)")
            #expect(second.json["count"] as? Int == 2)
            #expect(try kinds(daemon, name, "service.unhealthy") == 1)
            #expect(try kinds(daemon, name, "service.recovered") == 1)
            // Recovered only after the threshold: three failed probes in a row.
            let unhealthy = try daemon.events(service: name).first { $0["kind"] as? String == "service.unhealthy" }
            #expect(((unhealthy?["detail"] as? [String: Any])?["failed_probes"] as? Int) == 3)
            let now = try daemon.service(name)
            #expect(now["pid"] as? Int != first)
            #expect(now["state"] as? String == "ready")
            #expect(!isAlive(Int32(first)))

            // Healthy again: the next acquire recovers nothing.
            #expect(try acquire(daemon, name).status == 201)
            #expect(try kinds(daemon, name, "service.recovered") == 1)
        }
    }

    @Test("50 concurrent first acquires start the service exactly once")
    func concurrentFirstAcquires() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("herd")
            try daemon.defineSocketService(name, arguments: ["--start-delay", "0.3"])
            let results = Mutex50()
            DispatchQueue.concurrentPerform(iterations: 50) { _ in
                let response = try? daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 120_000])
                results.append(response)
            }
            let responses = results.values
            #expect(responses.count == 50)
            #expect(responses.allSatisfy { $0?.status == 201 })
            #expect(responses.filter { $0?.json["started"] as? Bool == true }.count == 1)
            // Each reads the count right after its own reference: at least 1, and the last
            // reference taken is read as all 50 (acquires granted together may read the same).
            let counts = responses.compactMap { $0?.json["count"] as? Int }
            #expect(counts.count == 50 && counts.allSatisfy { (1...50).contains($0) } && counts.max() == 50)
            #expect(try daemon.kernelCount(name) == 50)
            #expect(try kinds(daemon, name, "service.starting") == 1)
            #expect(try daemon.service(name)["leases"] as? Int == 50)
        }
    }

    @Test("an acquire during stopping waits, then starts the service again")
    func acquireDuringStopping() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("slowstop")
            try daemon.defineSocketService(name, arguments: ["--term-delay", "0.6"])
            let lease = try #require(try acquire(daemon, name).json["id"] as? String)
            let releaser = Thread { _ = try? daemon.unix.send("DELETE", "/v1/leases/\(lease)") }
            releaser.start()
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "stopping" })
            let again = try acquire(daemon, name)
            #expect(again.status == 201, "\(again.text)")
            #expect(again.json["started"] as? Bool == true)
            #expect(again.json["count"] as? Int == 1)
            let status = try daemon.service(name)
            #expect(status["state"] as? String == "ready")
            #expect(try daemon.kernelCount(name) == 1)
            #expect(try kinds(daemon, name, "service.starting") == 2)
        }
    }

    @Test("linger keeps the service for a reuse, then stops it")
    func linger() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("linger")
            try daemon.defineSocketService(name, extra: ["linger_ms": 1_500])
            let first = try acquire(daemon, name)
            let pid = try #require(try daemon.service(name)["pid"] as? Int)
            let released = try daemon.unix.send("DELETE", "/v1/leases/\(first.json["id"] as? String ?? "")")
            #expect(released.json["count"] as? Int == 0)
            #expect(released.json["service_stopped"] as? Bool == false)
            #expect(try daemon.service(name)["linger_until"] is String)

            let reuse = try acquire(daemon, name)
            #expect(reuse.json["started"] as? Bool == false)
            #expect(try daemon.service(name)["pid"] as? Int == pid)
            #expect(try daemon.service(name)["linger_until"] is NSNull)
            _ = try daemon.unix.send("DELETE", "/v1/leases/\(reuse.json["id"] as? String ?? "")")
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "stopped" })
            let stopped = try daemon.events(service: name).last { $0["kind"] as? String == "service.stopped" }
            #expect((stopped?["detail"] as? [String: Any])?["reason"] as? String == "linger_expired")
            #expect(try kinds(daemon, name, "service.starting") == 1)
        }
    }

    @Test("stop escalates to SIGKILL for a group that ignores SIGTERM, grandchild included")
    func stopEscalates() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("stubborn")
            let marker = "\(daemon.stateDir)/\(name)-grandchild"
            try daemon.defineSocketService(name, extra: ["stop_timeout_ms": 300], arguments: ["--ignore-term", "--grandchild", marker])
            let lease = try acquire(daemon, name)
            let pid = Int32(try #require(try daemon.service(name)["pid"] as? Int))
            #expect(eventually { FileManager.default.fileExists(atPath: marker + ".ready") })
            let release = try daemon.unix.send("DELETE", "/v1/leases/\(lease.json["id"] as? String ?? "")")
            #expect(release.json["service_stopped"] as? Bool == true)
            #expect(!groupRuns(pid))
            #expect(pidsMentioning(marker).isEmpty)
            let stopped = try daemon.events(service: name).last { $0["kind"] as? String == "service.stopped" }
            #expect((stopped?["detail"] as? [String: Any])?["signal"] as? String == "KILL")
        }
    }

    @Test("admin restart keeps the leases and replaces the process")
    func adminRestart() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("restart")
            try daemon.defineSocketService(name)
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/restart").status == 409)
            let lease = try acquire(daemon, name)
            let before = try #require(try daemon.service(name)["pid"] as? Int)
            let restarted = try daemon.unix.send("POST", "/v1/services/\(name)/restart")
            #expect(restarted.status == 200, "\(restarted.text)")
            #expect(restarted.json["state"] as? String == "ready")
            #expect(restarted.json["pid"] as? Int != before)
            #expect(!isAlive(Int32(before)))
            #expect(try daemon.unix.get("/v1/leases/\(lease.json["id"] as? String ?? "")").status == 200)
            #expect(try daemon.kernelCount(name) == 1)
            #expect(try daemon.anonymous.send("POST", "/v1/services/\(name)/restart").status == 401)
        }
    }
}

/// Collects results from concurrent threads.
final class Mutex50: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [TestHTTPClient.Response?] = []
    func append(_ item: TestHTTPClient.Response?) { lock.withLock { items.append(item) } }
    var values: [TestHTTPClient.Response?] { lock.withLock { items } }
}

extension ISO8601DateFormatter {
    /// procrefd's timestamps: RFC 3339 with milliseconds.
    nonisolated(unsafe) static let withFractions: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
}
