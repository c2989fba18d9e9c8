import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// End-to-end: real procrefd, real holders, real semaphores, real service processes.
@Suite("Lease lifecycle")
struct LeaseLifecycleTests {
    @Test("first acquire starts the service, second shares it, last release stops the group")
    func acquireShareRelease() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("share")
            _ = try daemon.defineSocketService(name)

            let first = try daemon.tcp.send("POST", "/v1/services/\(name)/leases", json: ["holder": "a", "ttl_ms": 60_000])
            #expect(first.status == 201, "\(first.text)")
            #expect(first.json["count"] as? Int == 1)
            #expect(first.json["started"] as? Bool == true)
            let firstHolder = try #require(first.json["holder_pid"] as? Int)
            #expect(isAlive(Int32(firstHolder)))
            #expect(try daemon.kernelCount(name) == 1)
            let servicePID = try #require(try daemon.unix.get("/v1/services/\(name)").json["pid"] as? Int)
            #expect(isAlive(Int32(servicePID)))

            let second = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["holder": "b", "ttl_ms": 60_000])
            #expect(second.status == 201, "\(second.text)")
            #expect(second.json["count"] as? Int == 2)
            #expect(second.json["started"] as? Bool == false)
            #expect(try daemon.kernelCount(name) == 2)
            #expect(try daemon.unix.get("/v1/services/\(name)").json["pid"] as? Int == servicePID)

            let firstID = try #require(first.json["id"] as? String)
            let secondID = try #require(second.json["id"] as? String)
            let release1 = try daemon.tcp.send("DELETE", "/v1/leases/\(firstID)")
            #expect(release1.status == 200)
            #expect(release1.json["count"] as? Int == 1)
            #expect(release1.json["service_stopped"] as? Bool == false)
            #expect(try daemon.kernelCount(name) == 1)
            #expect(isAlive(Int32(servicePID)))
            // Released, the holder holds nothing: gone, or back in the pool for a later lease.
            #expect(!isAlive(Int32(firstHolder)) || arguments(of: Int32(firstHolder)).dropFirst().first == "--pool")

            let release2 = try daemon.unix.send("DELETE", "/v1/leases/\(secondID)")
            #expect(release2.status == 200)
            #expect(release2.json["count"] as? Int == 0)
            #expect(release2.json["service_stopped"] as? Bool == true)
            #expect(try daemon.kernelCount(name) == 0)
            #expect(!groupRuns(Int32(servicePID)))

            #expect(try daemon.eventKinds(service: name) == [
                "service.defined", "service.starting", "service.ready", "lease.acquired", "lease.acquired",
                "lease.released", "lease.released", "service.stopping", "service.stopped",
            ])
            let again = try daemon.unix.send("DELETE", "/v1/leases/\(secondID)")
            #expect(again.status == 404)
            #expect(again.contentType == "application/problem+json")
        }
    }

    @Test("a SIGKILLed holder gives its count back; the lease is lost and the service stopped")
    func killedHolder() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("lost")
            _ = try daemon.defineSocketService(name)
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(grant.status == 201)
            let holder = Int32(try #require(grant.json["holder_pid"] as? Int))
            let servicePID = Int32(try #require(try daemon.unix.get("/v1/services/\(name)").json["pid"] as? Int))

            kill(holder, SIGKILL)
            #expect(eventually { (try? daemon.kernelCount(name)) == 0 })
            #expect(eventually { (try? daemon.eventKinds(service: name).last) == "service.stopped" })
            #expect(try daemon.eventKinds(service: name).contains("lease.lost"))
            #expect(!groupRuns(servicePID))
            let leases = try daemon.unix.get("/v1/leases?service=\(name)").json["leases"] as? [[String: Any]]
            #expect(leases?.isEmpty == true)
        }
    }

    @Test("a released holder serves the next lease: idle it shows --pool and holds nothing; killed, it ends only its lease")
    func reusedHolder() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("reuse")
            _ = try daemon.defineSocketService(name, extra: ["linger_ms": 60_000])
            let first = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            let holder = Int32(try #require(first.json["holder_pid"] as? Int))
            // Its command line names the lease in full (re-adoption after a restart reads it),
            // semaphore ids of eight digits and more included.
            let semid = try #require(daemon.semaphoreSet(name).map { String($0.id) })
            #expect(Array(arguments(of: holder).dropFirst()) == [semid, "60000", "0"])
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(first.json["id"] as? String ?? "")").status == 200)
            #expect(try daemon.kernelCount(name) == 0)
            #expect(eventually { arguments(of: holder).dropFirst().first == "--pool" }, "\(arguments(of: holder))")

            let second = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(second.json["holder_pid"] as? Int == Int(holder))
            #expect(second.json["count"] as? Int == 1)
            #expect(Array(arguments(of: holder).dropFirst()) == [semid, "60000", "0"], "\(arguments(of: holder))")
            let third = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(third.json["holder_pid"] as? Int != Int(holder))
            kill(holder, SIGKILL)
            #expect(eventually { (try? daemon.kernelCount(name)) == 1 })
            #expect(eventually { (try? daemon.eventKinds(service: name).filter { $0 == "lease.lost" }.count) == 1 })
            let live = try daemon.unix.get("/v1/leases?service=\(name)").json["leases"] as? [[String: Any]]
            #expect(live?.compactMap { $0["id"] as? String } == [third.json["id"] as? String].compactMap { $0 })
        }
    }

    @Test("a holder that does not answer a release is killed after 5 s; the release still ends its lease and its count")
    func stoppedHolderRelease() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("stuck")
            _ = try daemon.defineSocketService(name, extra: ["linger_ms": 60_000])
            let lease = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            let holder = Int32(try #require(lease.json["holder_pid"] as? Int))
            // Stopped, it cannot answer on its socket: the release waits past the HTTP thread's
            // short blocking wait, on the I/O loop, and kills it at the deadline.
            #expect(kill(holder, SIGSTOP) == 0)
            let begun = Date()
            let released = try daemon.unix.send("DELETE", "/v1/leases/\(lease.json["id"] as? String ?? "")")
            #expect(released.status == 200, "\(released.json)")
            #expect(Date().timeIntervalSince(begun) >= 4.5)
            #expect(try daemon.kernelCount(name) == 0)
            #expect(eventually { kill(holder, 0) != 0 })
            #expect(try daemon.eventKinds(service: name).last == "lease.released")
        }
    }

    /// A process's argv, as /proc shows it now.
    func arguments(of pid: Int32) -> [String] {
        let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test("a TTL lease without keepalive expires no earlier than its TTL; keepalive extends it")
    func ttlExpiry() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("ttl")
            _ = try daemon.defineSocketService(name)

            // Kept alive for well over its TTL, it stays.
            let kept = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 400])
            let keptID = try #require(kept.json["id"] as? String)
            let keepUntil = Date().addingTimeInterval(1.2)
            var lastSent = Date()
            while Date() < keepUntil {
                lastSent = Date()
                #expect(try daemon.unix.send("POST", "/v1/leases/\(keptID)/keepalive").status == 200)
                usleep(100_000)
            }
            #expect(try daemon.unix.get("/v1/leases/\(keptID)").status == 200)
            #expect(try daemon.kernelCount(name) == 1)

            // Left alone, it expires no earlier than a TTL after the last keepalive was sent
            // (the holder restarts its deadline when that keepalive reaches it, later), and
            // the service stops with the last reference.
            #expect(eventually { (try? daemon.kernelCount(name)) == 0 })
            let elapsed = Date().timeIntervalSince(lastSent)
            #expect(elapsed >= 0.39, "expired \(elapsed) s after the last keepalive was sent, TTL 0.4 s")
            #expect(eventually { (try? daemon.eventKinds(service: name).last) == "service.stopped" })
            let kinds = try daemon.eventKinds(service: name)
            #expect(kinds.contains("lease.expired"))
            #expect(kinds.filter { $0 == "lease.keepalive" }.count >= 5)
            #expect(try daemon.unix.get("/v1/leases/\(keptID)").status == 404)
        }
    }

    @Test("a client_pid lease ends when that client exits")
    func clientBound() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("client")
            _ = try daemon.defineSocketService(name)
            let client = try daemon.startSleeper()

            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["client_pid": Int(client.processIdentifier)])
            #expect(grant.status == 201, "\(grant.text)")
            #expect(grant.json["ttl_ms"] is NSNull)
            #expect(try daemon.kernelCount(name) == 1)

            // SIGKILL: the test runner's blocked signal mask is inherited by the child.
            kill(client.processIdentifier, SIGKILL)
            client.waitUntilExit()
            #expect(eventually { (try? daemon.kernelCount(name)) == 0 })
            #expect(eventually { (try? daemon.eventKinds(service: name).contains("lease.client_exited")) == true })
            #expect(eventually { (try? daemon.eventKinds(service: name).last) == "service.stopped" })

            let gone = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["client_pid": Int(client.processIdentifier)])
            #expect(gone.status == 422)
            #expect(try daemon.kernelCount(name) == 0)
        }
    }

    @Test("a service that never becomes healthy: 503, lease undone, nothing left running")
    func unhealthyStart() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("sick")
            let marker = "\(daemon.stateDir)/\(name)-never"
            // A grandchild with a unique command line, to see that the whole group is stopped.
            let sleeper = "sleep \(Int.random(in: 100_000...999_999)).5"
            let define = try daemon.unix.send("PUT", "/v1/services/\(name)", json: [
                "start": ["sh", "-c", "\(sleeper) & \(sleeper)", marker],
                "health": ["unix": marker, "timeout_ms": 100],
                "ready_timeout_ms": 400, "stop_timeout_ms": 1000,
            ])
            #expect(define.status == 201)
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(grant.status == 503)
            #expect(grant.contentType == "application/problem+json")
            #expect(try daemon.kernelCount(name) == 0)
            #expect(pidsMentioning(marker).isEmpty)
            #expect(pidsMentioning(sleeper).isEmpty)
            let kinds = try daemon.eventKinds(service: name)
            #expect(kinds == ["service.defined", "service.starting", "service.start_failed", "service.stopping", "service.stopped"])
            #expect(try daemon.unix.get("/v1/leases").json["leases"] as? [Any] != nil)
            #expect((try daemon.unix.get("/v1/leases?service=\(name)").json["leases"] as? [Any])?.isEmpty == true)
            #expect(try daemon.unix.get("/v1/services/\(name)").json["state"] as? String == "stopped")
        }
    }
}
