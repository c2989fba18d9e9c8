import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// A service's set removed from outside procrefd (`ipcrm -s`): its leases are lost with reason
/// `semaphore_removed`, a new set replaces it, and the service then stops by its own rules.
@Suite("Semaphore set removed")
struct SemaphoreRemovalTests {
    @Test("ipcrm -s of a leased service's set: leases lost, holders ended, a new set, the service stopped; a new lease counts on it")
    func removedSet() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("ipcrm")
            _ = try daemon.defineSocketService(name)
            var holders: [Int32] = []
            for _ in 0..<2 {
                let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
                #expect(grant.status == 201, "\(grant.text)")
                holders.append(Int32(try #require(grant.json["holder_pid"] as? Int)))
            }
            let before = try daemon.service(name)
            let oldID = try #require(before["semid"] as? Int)
            let servicePID = Int32(try #require(before["pid"] as? Int))
            #expect(try daemon.kernelCount(name) == 2)

            let removal = try runProgram("/usr/bin/ipcrm", ["-s", String(oldID)])
            #expect(removal.code == 0, "\(removal.stderr)")
            daemon.forgetSemaphoreSet(name)

            #expect(eventually { (try? daemon.eventKinds(service: name).contains("service.semaphore_recreated")) == true })
            #expect(eventually { (try? daemon.eventKinds(service: name).last) == "service.stopped" })
            let events = try daemon.events(service: name)
            let lost = events.filter { $0["kind"] as? String == "lease.lost" }
            #expect(lost.count == 2)
            #expect(lost.allSatisfy { ($0["detail"] as? [String: Any])?["reason"] as? String == "semaphore_removed" })
            let recreated = try #require(events.first { $0["kind"] as? String == "service.semaphore_recreated" })
            #expect((recreated["detail"] as? [String: Any])?["leases_lost"] as? Int == 2)
            // Nothing was stopped while the count was unreadable: the stop follows the losses.
            let kinds = events.compactMap { $0["kind"] as? String }
            let firstStop = try #require(kinds.firstIndex(of: "service.stopping"))
            #expect(kinds.lastIndex(of: "lease.lost").map { $0 < firstStop } == true)

            #expect(eventually { holders.allSatisfy { !isAlive($0) || Self.isIdleHolder($0) } })
            #expect(!groupRuns(servicePID))
            let after = try daemon.service(name)
            let newID = try #require(after["semid"] as? Int)
            #expect(newID != oldID)
            #expect(after["count"] as? Int == 0)
            let leases = try daemon.unix.get("/v1/leases?service=\(name)").json["leases"] as? [[String: Any]]
            #expect(leases?.isEmpty == true)

            let again = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(again.status == 201, "\(again.text)")
            #expect(again.json["count"] as? Int == 1)
            #expect(try daemon.kernelCount(name) == 1)
        }
    }

    /// A pooled holder that holds nothing shows `--pool` as its argument.
    static func isIdleHolder(_ pid: Int32) -> Bool {
        let argv = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?.split(separator: "\0") ?? []
        return argv.dropFirst().first == "--pool"
    }
}
