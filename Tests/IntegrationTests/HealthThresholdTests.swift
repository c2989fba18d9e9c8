import Dispatch
import Foundation
import Glibc
import ProcrefdClient
import Testing

/// One dropped connection must not restart a shared service; a burst of acquires shares
/// one probe.
@Suite("Health threshold")
struct HealthThresholdTests {
    func burst(_ daemon: DaemonHarness, _ name: String, count: Int = 20) -> [TestHTTPClient.Response?] {
        let results = Mutex50()
        DispatchQueue.concurrentPerform(iterations: count) { _ in
            results.append(try? daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 120_000]))
        }
        return results.values
    }

    func failedProbes(_ daemon: DaemonHarness, _ name: String) throws -> Int {
        let metrics = try daemon.unix.get("/metrics").text
        let prefix = #"procrefd_health_check_failures_total{service="\#(name)"} "#
        return metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) } ?? 0
    }

    @Test("twenty acquires while the listener is briefly gone: failed probes are retried, nothing restarts")
    func briefRefusal() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("blip")
            let socket = "\(daemon.stateDir)/\(name).svc.sock", flag = "\(daemon.stateDir)/\(name).close"
            // fresh_ms 0: every acquire probes, so the burst meets the gap for sure.
            try daemon.defineSocketService(
                name, extra: ["health": ["unix": socket, "timeout_ms": 500, "failures": 3, "interval_ms": 400, "fresh_ms": 0]],
                arguments: ["--close-flag", flag, "--reopen-after", "0.3"])
            let first = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 120_000])
            #expect(first.status == 201, "\(first.text)")
            let pid = try #require(try daemon.service(name)["pid"] as? Int)

            _ = FileManager.default.createFile(atPath: flag, contents: Data())
            #expect(eventually { !FileManager.default.fileExists(atPath: socket) })
            let responses = burst(daemon, name)
            #expect(responses.allSatisfy { $0?.status == 201 }, "\(responses.map { $0?.text ?? "-" })")
            #expect(try daemon.kernelCount(name) == 21)
            #expect(try failedProbes(daemon, name) >= 1)  // the gap was seen, and tolerated
            let kinds = try daemon.eventKinds(service: name)
            #expect(!kinds.contains("service.unhealthy"))
            #expect(!kinds.contains("service.recovered"))
            #expect(kinds.filter { $0 == "service.starting" }.count == 1)
            #expect(try daemon.service(name)["pid"] as? Int == pid)
        }
    }

    @Test("a burst of acquires on a healthy service shares its probes (fresh_ms)")
    func burstSharesProbes() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("fresh")
            let socket = "\(daemon.stateDir)/\(name).svc.sock", accepts = "\(daemon.stateDir)/\(name).accepts"
            try daemon.defineSocketService(
                name, extra: ["health": ["unix": socket, "timeout_ms": 500, "fresh_ms": 2_000]], arguments: ["--accepts", accepts])
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 120_000]).status == 201)
            func accepted() -> Int { Int((try? String(contentsOfFile: accepts, encoding: .utf8)) ?? "0") ?? 0 }
            let before = accepted()
            let responses = burst(daemon, name)
            #expect(responses.allSatisfy { $0?.status == 201 })
            // Without the fresh window every acquire would connect once: 20.
            #expect(accepted() - before < 5, "\(accepted() - before) probes for 20 acquires")
        }
    }
}
