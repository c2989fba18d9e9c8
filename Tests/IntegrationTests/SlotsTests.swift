import Foundation
import Glibc
import ProcrefdClient
import Testing

/// Counted slots on a real daemon: services with `slots`, locks with no process, the FIFO
/// queue of acquires with `wait_ms`, and how a wait ends.
@Suite("Counted slots")
struct SlotsTests {
    /// Defines a lock: `slots`, no start command.
    static func defineLock(_ daemon: DaemonHarness, _ name: String, slots: Int) throws {
        let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: ["slots": slots])
        guard response.status == 201 else { throw TestHTTPClient.Failure(description: "define \(name): \(response.status) \(response.text)") }
        _ = daemon.semaphoreSet(name)
    }

    static func queued(_ daemon: DaemonHarness, _ name: String) -> Int {
        (try? daemon.service(name)["queued"] as? Int) ?? -1
    }

    /// Sends an acquire on another thread; `result()` waits for its answer.
    final class PendingAcquire: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var response: TestHTTPClient.Response?

        init(_ daemon: DaemonHarness, _ name: String, body: [String: Any]) {
            let client = daemon.unix
            nonisolated(unsafe) let body = body
            Thread { [self] in
                response = try? client.send("POST", "/v1/services/\(name)/leases", json: body)
                done.signal()
            }.start()
        }

        func result(timeout: Double = 30) -> TestHTTPClient.Response? {
            done.wait(timeout: .now() + timeout) == .success ? response : nil
        }
    }

    @Test("slots 2: ten `run --wait` commands, never more than two at once, all served in arrival order")
    func runWaitFairness() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("slots")
            try daemon.defineSocketService(name, extra: ["slots": 2])
            let log = "\(daemon.stateDir)/\(name).runs"
            var runs: [Process] = []
            defer {
                for run in runs where run.isRunning { kill(run.processIdentifier, SIGKILL) }
                for run in runs { run.waitUntilExit() }
            }
            for index in 0..<10 {
                let run = Process()
                run.executableURL = URL(fileURLWithPath: "\(binDirectory)/procrefd")
                run.arguments = ["run", name, "--state-dir", daemon.stateDir, "--wait", "60s", "--holder", "job-\(index)", "--",
                                 "sh", "-c", "echo \"$(date +%s%N) start \(index)\" >> \(log); sleep 0.2; echo \"$(date +%s%N) end \(index)\" >> \(log)"]
                try run.run()
                runs.append(run)
                // One arrival at a time, so that arrival order is known: the first two run their
                // commands, each later one is queued before the next starts.
                let (kind, before) = index < 2 ? ("start", index) : ("lease.queued", index - 2)
                #expect(eventually {
                    if kind == "start" { return ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains(" start \(index)\n") }
                    return ((try? daemon.eventKinds(service: name)) ?? []).filter { $0 == kind }.count > before || !run.isRunning
                })
            }
            #expect(eventually(timeout: 60) { runs.allSatisfy { !$0.isRunning } })
            for run in runs {
                run.waitUntilExit()
                #expect(run.terminationStatus == 0)
            }

            // Never more than two commands between their start and end.
            let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ") }
            #expect(lines.count == 20)
            var running = 0, most = 0
            for line in lines.sorted(by: { UInt64($0[0])! < UInt64($1[0])! }) {
                running += line[1] == "start" ? 1 : -1
                most = max(most, running)
            }
            #expect(most <= 2, "up to \(most) ran at once")
            #expect(most == 2, "the two slots were used together")
            let starts = lines.filter { $0[1] == "start" }.map { Int($0[2])! }
            #expect(starts == Array(0..<10), "started in \(starts)")

            // The audit log agrees: granted in arrival order, the queued ones with waited_ms.
            let acquired = try daemon.events(service: name).filter { $0["kind"] as? String == "lease.acquired" }
            let holders = acquired.compactMap { ($0["detail"] as? [String: Any])?["holder"] as? String }
            #expect(holders == (0..<10).map { "job-\($0)" })
            #expect(acquired.compactMap { ($0["detail"] as? [String: Any])?["count"] as? Int }.allSatisfy { $0 <= 2 })
            #expect(acquired.filter { ($0["detail"] as? [String: Any])?["waited_ms"] != nil }.count >= 8)
            #expect(Self.queued(daemon, name) == 0)
            #expect(try daemon.kernelCount(name) == 0)
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "stopped" })
        }
    }

    @Test("a pure lock: ready while held, a SIGKILLed holder hands it to the next waiter, stopped when free")
    func lockHandOver() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("lock")
            try Self.defineLock(daemon, name, slots: 1)
            let first = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(first.status == 201, "\(first.text)")
            #expect(first.json["started"] as? Bool == false)
            #expect(try daemon.service(name)["state"] as? String == "ready")
            #expect(try daemon.service(name)["pid"] is NSNull)

            let waiter = PendingAcquire(daemon, name, body: ["ttl_ms": 60_000, "wait_ms": 30_000, "holder": "next"])
            #expect(eventually { Self.queued(daemon, name) == 1 })
            let holderPID = try #require(first.json["holder_pid"] as? Int)
            kill(Int32(holderPID), SIGKILL)
            let second = try #require(waiter.result())
            #expect(second.status == 201, "\(second.text)")
            #expect(second.json["holder"] as? String == "next")
            #expect((second.json["waited_ms"] as? Int).map { $0 >= 0 } == true)
            #expect(try daemon.kernelCount(name) == 1)
            #expect(Self.queued(daemon, name) == 0)

            let kinds = try daemon.eventKinds(service: name)
            #expect(kinds == ["service.defined", "lease.acquired", "lease.queued", "lease.lost", "lease.acquired"], "\(kinds)")
            let id = try #require(second.json["id"] as? String)
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
            #expect(try daemon.kernelCount(name) == 0)
            #expect(try daemon.service(name)["state"] as? String == "stopped")
        }
    }

    @Test("wait_ms runs out: 429 slots-exhausted with the position it had, and the queue is empty; wait_ms 0 queues nothing")
    func waitTimesOut() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("lockwait")
            try Self.defineLock(daemon, name, slots: 1)
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)

            let refused = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["wait_ms": 300])
            #expect(refused.status == 429)
            #expect(refused.contentType == "application/problem+json")
            #expect(refused.json["type"] as? String == "urn:procrefd:problem:slots-exhausted")
            #expect(refused.json["position"] as? Int == 1)
            #expect(refused.json["slots"] as? Int == 1)
            #expect(refused.headers["retry-after"] == "1")
            #expect(Self.queued(daemon, name) == 0)
            let left = try daemon.events(service: name).last
            #expect(left?["kind"] as? String == "lease.queue_left")
            #expect((left?["detail"] as? [String: Any])?["reason"] as? String == "timeout")

            let before = try daemon.events(service: name).count
            let atOnce = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: [:])
            #expect(atOnce.status == 429)
            #expect(atOnce.json["position"] as? Int == 1)
            #expect(try daemon.events(service: name).count == before)
            #expect(try daemon.kernelCount(name) == 1)
        }
    }

    @Test("a queued client that hangs up, or whose client_pid exits, leaves the queue")
    func queueLeavers() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("lockleave")
            try Self.defineLock(daemon, name, slots: 1)
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)

            // A raw connection that sends its acquire and hangs up while queued.
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let path = "\(daemon.stateDir)/procrefd.sock"
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
            }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            #expect(connected == 0)
            let body = #"{"wait_ms":30000}"#
            let request = "POST /v1/services/\(name)/leases HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            #expect(request.withCString { write(fd, $0, strlen($0)) } == request.utf8.count)
            #expect(eventually { Self.queued(daemon, name) == 1 })
            close(fd)
            #expect(eventually { Self.queued(daemon, name) == 0 })
            let disconnected = try daemon.events(service: name).last
            #expect(disconnected?["kind"] as? String == "lease.queue_left")
            #expect((disconnected?["detail"] as? [String: Any])?["reason"] as? String == "disconnect")

            // A client process that exits while its acquire is queued.
            let client = Process()
            client.executableURL = URL(fileURLWithPath: "/bin/sleep")
            client.arguments = ["60"]
            try client.run()
            defer { if client.isRunning { kill(client.processIdentifier, SIGKILL) } }
            let waiter = PendingAcquire(daemon, name, body: ["client_pid": client.processIdentifier, "wait_ms": 30_000])
            #expect(eventually { Self.queued(daemon, name) == 1 })
            kill(client.processIdentifier, SIGKILL)
            client.waitUntilExit()
            let answer = try #require(waiter.result())
            #expect(answer.status == 409)
            #expect(answer.json["type"] as? String == "urn:procrefd:problem:queue-left")
            #expect(Self.queued(daemon, name) == 0)
            let exited = try daemon.events(service: name).last
            #expect((exited?["detail"] as? [String: Any])?["reason"] as? String == "client_exit")
            #expect(try daemon.kernelCount(name) == 1)
        }
    }

    @Test("`lease acquire --wait` longer than the daemon holds one wait: rounds of acquire_timeout_ms until a TTL frees the lock")
    func cliWaitRounds() throws {
        let configDir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: configDir) }
        let name = "lockcli-\(UUID().uuidString.prefix(8).lowercased())"
        try "[limits]\nacquire_timeout_ms = 300\n\n[services.\(name)]\nslots = 1\n"
            .write(toFile: "\(configDir)/procrefd.toml", atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(extraArguments: ["--config", "\(configDir)/procrefd.toml"])
        defer { daemon.shutdown() }
        daemon.adoptServiceName(name)
        _ = daemon.semaphoreSet(name)
        let held = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 3_000])
        #expect(held.status == 201)

        let refused = try runProcrefd(["lease", "acquire", name, "--state-dir", daemon.stateDir, "--wait", "100ms"])
        #expect(refused.code == 5)
        #expect(refused.stderr.contains("slots"), "\(refused.stderr)")

        let waited = try runProcrefd(["lease", "acquire", name, "--state-dir", daemon.stateDir, "--wait", "20s", "--ttl", "30s"])
        #expect(waited.code == 0, "\(waited.stderr)")
        let id = waited.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try daemon.unix.get("/v1/leases/\(id)").status == 200)
        let kinds = try daemon.eventKinds(service: name)
        #expect(kinds.contains("lease.expired"))
        // The refused try above left once; the waiting one at least once more (rounds of 300 ms within 3 s).
        #expect(kinds.filter { $0 == "lease.queue_left" }.count >= 2, "several rounds: \(kinds)")
        #expect(kinds.last == "lease.acquired")
        #expect(try daemon.kernelCount(name) == 1)
    }

    @Test("a stopping procrefd answers its queued acquires (503 shutting-down) instead of waiting for them")
    func queueAtShutdown() throws {
        let daemon = try DaemonHarness()
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("lockstop")
        try Self.defineLock(daemon, name, slots: 1)
        #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
        let waiter = PendingAcquire(daemon, name, body: ["wait_ms": 60_000])
        #expect(eventually { Self.queued(daemon, name) == 1 })
        kill(daemon.process.processIdentifier, SIGTERM)
        // Well before the HTTP server's 30 s wait for requests in flight would have ended.
        let answer = try #require(waiter.result(timeout: 10))
        #expect(answer.status == 503)
        #expect(answer.json["type"] as? String == "urn:procrefd:problem:shutting-down")
        #expect(eventually { !daemon.process.isRunning })
        #expect(daemon.semaphoreSetGone(name))
    }

    @Test("bad slot input: 422 naming the field, nothing defined or queued")
    func badInput() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("badslots")
            for (body, field) in [
                (["slots": 0] as [String: Any], "slots"),
                (["slots": 5_000], "slots"),  // above limits.max_leases_per_service (1024)
                (["slots": 1, "health": ["tcp": "127.0.0.1:9"]], "health"),
                ([:], "start"),
            ] {
                let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: body)
                #expect(response.status == 422, "\(body): \(response.text)")
                #expect((response.json["detail"] as? String)?.hasPrefix(field) == true, "\(body): \(response.text)")
            }
            #expect(try daemon.unix.get("/v1/services/\(name)").status == 404)

            try Self.defineLock(daemon, name, slots: 1)
            for waitMs in [-1, 3_600_001] {
                let response = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["wait_ms": waitMs])
                #expect(response.status == 422, "\(waitMs): \(response.text)")
            }
            #expect(try daemon.kernelCount(name) == 0)
            #expect(try daemon.eventKinds(service: name) == ["service.defined"])
        }
    }
}
