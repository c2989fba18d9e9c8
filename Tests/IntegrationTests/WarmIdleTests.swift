import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// `idle = "freeze"`: a real service's cgroup frozen at the last release, thawed by the next
/// acquire (one health check, no cold start), stopped after freeze_max_ms; refused where
/// services have no cgroup.
@Suite("Warm idle")
struct WarmIdleTests {
    func release(_ daemon: DaemonHarness, _ id: String) throws {
        #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
    }

    @Test("the last release freezes the cgroup (same process, no CPU); the next acquire thaws it without a start; after freeze_max_ms frozen it is stopped")
    func freezeThawStop() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("warm")
            try daemon.defineSocketService(name, extra: ["idle": "freeze", "freeze_max_ms": 1_500])
            let cgroup = try #require(daemon.cgroupRoot?.child("svc-\(name)"))
            try release(daemon, try daemon.leaseID(name))
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "frozen" })
            #expect(eventually { cgroup.isFrozen })
            let pid = try #require(try daemon.service(name)["pid"] as? Int)
            #expect(ProcessStat.read(pid: Int32(pid))?.isLive == true)

            let again = try daemon.leaseID(name)
            #expect(!cgroup.isFrozen)
            let status = try daemon.service(name)
            #expect(status["state"] as? String == "ready")
            #expect(status["pid"] as? Int == pid)  // the same process: thawed, not started again
            let kinds = try daemon.eventKinds(service: name)
            #expect(kinds.filter { $0 == "service.starting" }.count == 1)
            #expect(kinds.contains("service.frozen") && kinds.contains("service.thawed"))

            try release(daemon, again)
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "frozen" })
            #expect(eventually(timeout: 15) { (try? daemon.service(name)["state"] as? String) == "stopped" })
            let stopped = try daemon.events(service: name).last { $0["kind"] as? String == "service.stopped" }
            #expect((stopped?["detail"] as? [String: Any])?["reason"] as? String == "frozen_max")
            #expect(!isAlive(Int32(pid)))
            #expect(try daemon.kernelCount(name) == 0)
        }
    }

    @Test("idle = freeze is refused where services have no cgroup, naming why; bad idle values are 422")
    func refusedWithoutCgroups() throws {
        let daemon = try DaemonHarness(extraArguments: ["--service-cgroups", "off"])
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("warm")
        for (fields, words) in [(["idle": "freeze"], "cgroup"), (["idle": "nap"], "idle"), (["freeze_max_ms": 5_000], "freeze_max_ms")] as [([String: Any], String)] {
            let body = (["start": ["sleep", "30"]] as [String: Any]).merging(fields) { $1 }
            let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: body)
            #expect(response.status == 422, "\(fields)")
            #expect(response.text.contains(words), "\(response.text)")
        }
        #expect(try daemon.unix.get("/v1/services/\(name)").status == 404)
    }
}
