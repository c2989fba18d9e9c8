import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// procref's process utilities over HTTP, for managed processes only.
@Suite("Process control")
struct ProcessControlTests {
    @Test("managed processes are described; unmanaged ones are refused and untouched")
    func ownership() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("proc")
            let marker = "\(daemon.stateDir)/\(name)-member"
            try daemon.defineSocketService(name, arguments: ["--grandchild", marker])
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            let holder = try #require(grant.json["holder_pid"] as? Int)
            let service = try #require(try daemon.service(name)["pid"] as? Int)
            // The grandchild: mentions the marker, and is not the service itself.
            #expect(eventually { pidsMentioning(marker).contains { $0 != Int32(service) } })
            let member = try #require(pidsMentioning(marker).first { $0 != Int32(service) })

            let h = try daemon.unix.get("/v1/processes/\(holder)").json
            #expect(h["owner"] as? String == "holder")
            #expect(h["lease"] as? String == grant.json["id"] as? String)
            #expect(h["alive"] as? Bool == true)
            #expect(try daemon.unix.get("/v1/processes/\(service)").json["owner"] as? String == "service")
            #expect(try daemon.unix.get("/v1/processes/\(member)").json["owner"] as? String == "service_member")

            // Someone else's process: 403, a refusal in the audit log, and the process lives on.
            let bystander = try daemon.startSleeper()
            let pid = bystander.processIdentifier
            // A lookup answers as for a pid that does not exist: readers learn nothing of others' pids.
            #expect(try daemon.unix.get("/v1/processes/\(pid)").status == 404)
            let refused = try daemon.unix.send("POST", "/v1/processes/\(pid)/signal", json: ["signal": "KILL"])
            #expect(refused.status == 403)
            #expect(refused.contentType == "application/problem+json")
            #expect(try daemon.unix.send("POST", "/v1/processes/\(pid)/stop", json: ["timeout_ms": 100]).status == 403)
            #expect(isAlive(pid))
            #expect(try daemon.events().filter { $0["kind"] as? String == "process.refused" && $0["pid"] as? Int == Int(pid) }.count == 2)
            #expect(try daemon.unix.get("/v1/processes/999999999").status == 404)
            #expect(try daemon.unix.send("POST", "/v1/processes/\(holder)/signal", json: ["signal": "BOGUS"]).status == 422)
            #expect(try daemon.unix.send("POST", "/v1/processes/abc/signal", json: ["signal": "TERM"]).status == 400)
            #expect(try daemon.anonymous.send("POST", "/v1/processes/\(holder)/signal", json: ["signal": "TERM"]).status == 401)
        }
    }

    @Test("stop escalates to KILL for a member that ignores TERM; a signalled holder ends its lease")
    func stopAndSignal() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("procstop")
            let marker = "\(daemon.stateDir)/\(name)-member"
            try daemon.defineSocketService(name, arguments: ["--grandchild", marker])
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            let service = Int32(try #require(try daemon.service(name)["pid"] as? Int))
            #expect(eventually { FileManager.default.fileExists(atPath: marker + ".ready") })
            let member = try #require(pidsMentioning(marker).first { $0 != service })

            let stop = try daemon.unix.send("POST", "/v1/processes/\(member)/stop", json: ["timeout_ms": 200])
            #expect(stop.status == 200, "\(stop.text)")
            #expect(stop.json["ended_by"] as? String == "KILL")
            #expect(!isAlive(member))
            #expect(try daemon.eventKinds(service: name).contains("process.stopped"))

            let holder = try #require(grant.json["holder_pid"] as? Int)
            let signalled = try daemon.unix.send("POST", "/v1/processes/\(holder)/signal", json: ["signal": "TERM"])
            #expect(signalled.status == 200)
            #expect(signalled.json["owner"] as? String == "holder")
            #expect(eventually { (try? daemon.kernelCount(name)) == 0 })
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "stopped" })
            #expect(try daemon.eventKinds(service: name).contains("process.signaled"))
        }
    }
}
