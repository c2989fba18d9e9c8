import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// Front doors with a real program behind them: Debian's redis-server on a Unix socket, and
/// redis-cli or a plain TCP socket in front (`make test` installs redis-server).
@Suite("Front door")
struct FrontDoorTests {
    /// Defines `name` as redis-server on a Unix socket in the state dir, behind a front on an
    /// ephemeral loopback port; returns the front's port and the redis socket path.
    func defineRedis(_ daemon: DaemonHarness, _ name: String, extra: [String: Any] = [:]) throws -> (port: UInt16, socket: String) {
        let socket = "\(daemon.stateDir)/\(name).redis.sock"
        var body: [String: Any] = [
            "start": ["redis-server", "--port", "0", "--unixsocket", socket, "--save", "", "--appendonly", "no"],
            "health": ["unix": socket, "timeout_ms": 500],
            "front": ["127.0.0.1:0"], "upstream": "unix:\(socket)",
            "linger_ms": 200, "ready_timeout_ms": 10_000,
        ]
        body.merge(extra) { $1 }
        let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: body)
        guard response.status == 201 else { throw TestHTTPClient.Failure(description: "define \(name): \(response.status) \(response.text)") }
        let front = try daemon.service(name)["front"] as? [String] ?? []
        guard let address = front.first, let port = UInt16(address.split(separator: ":").last ?? "") else {
            throw TestHTTPClient.Failure(description: "no front address in status: \(front)")
        }
        return (port, socket)
    }

    /// The door's pid: `procref-door` with the service's upstream in its command line.
    func doorPID(upstream socket: String) -> Int32? {
        pidsMentioning(socket).first { pid in
            let argv = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")?.split(separator: 0) ?? []
            return argv.first.map { String(decoding: $0, as: UTF8.self).hasSuffix("/procref-door") } ?? false
        }
    }

    @Test("redis behind a front: a ping to a stopped service starts it; a held connection and a lease count 2; both gone and linger past, redis is stopped")
    func redisBehindAFront() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("front")
            let (port, socket) = try defineRedis(daemon, name)
            #expect(try daemon.service(name)["state"] as? String == "stopped")

            let ping = try runProgram("/usr/bin/redis-cli", ["-h", "127.0.0.1", "-p", String(port), "ping"], timeout: 20)
            #expect(ping.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "PONG")
            #expect(try daemon.eventKinds(service: name).contains("front.first_connection"))
            // redis-cli's connection was the last: recorded once it closed (the linger then runs).
            #expect(eventually { (try? daemon.eventKinds(service: name).contains("front.idle")) == true })

            let held = try FrontConnection(port: port)
            defer { held.close() }
            #expect(try held.exchange("PING\r\n") == "+PONG\r\n")
            let lease = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).json
            let id = try #require(lease["id"] as? String)
            #expect(try daemon.kernelCount(name) == 2)
            let status = try daemon.service(name)
            #expect(status["connections"] as? Int == 1)
            #expect(status["leases"] as? Int == 1)
            let listing = try runProcrefd(["services", "--state-dir", daemon.stateDir])
            let row = listing.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") }?.split(separator: " ").map(String.init)
            #expect(listing.stdout.contains("CONN"))
            #expect(row.map { Array($0.prefix(5)) } == [name, "ready", "2", "1", "1"])
            let metrics = try daemon.unix.get("/metrics").text
            #expect(metrics.contains("procrefd_front_connections{service=\"\(name)\"} 1"))
            #expect(metrics.contains("procrefd_front_connections_total{service=\"\(name)\"} 2"))  // redis-cli's, then this one

            held.close()
            #expect(eventually { (try? daemon.service(name)["connections"] as? Int) == 0 })
            #expect(try daemon.kernelCount(name) == 1)
            #expect(try daemon.service(name)["state"] as? String == "ready")  // the lease keeps it
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "stopped" })
            #expect(try daemon.kernelCount(name) == 0)
            #expect(pidsMentioning(socket).filter { $0 != doorPID(upstream: socket) }.isEmpty)
        }
    }

    @Test("4 MiB each way through the door arrive whole (reads larger than its buffer, writes the peer takes in parts)")
    func bulkBothWays() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("front")
            let (port, _) = try defineRedis(daemon, name)
            let size = 4 << 20
            let value = String((0..<size).map { index in Character(Unicode.Scalar(UInt8(97 + index % 26))) })
            let client = try FrontConnection(port: port)
            defer { client.close() }
            try client.send("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$\(size)\r\n\(value)\r\n")
            #expect(try client.receive(timeout: 30) == "+OK\r\n")
            try client.send("GET big\r\n")
            let answer = try client.receive(exactly: "$\(size)\r\n".utf8.count + size + 2, timeout: 30)
            #expect(answer.count == "$\(size)\r\n".utf8.count + size + 2)
            #expect(answer.dropFirst("$\(size)\r\n".utf8.count).prefix(size).elementsEqual(value.utf8))
        }
    }

    @Test("kill -9 of the door: the count drops by exactly its connections; a new door takes the listening socket, and a connection made in the gap is answered")
    func doorKilled() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("front")
            let (port, socket) = try defineRedis(daemon, name, extra: ["linger_ms": 60_000])
            let first = try FrontConnection(port: port), second = try FrontConnection(port: port)
            defer {
                first.close()
                second.close()
            }
            #expect(try first.exchange("PING\r\n") == "+PONG\r\n")
            #expect(try second.exchange("PING\r\n") == "+PONG\r\n")
            _ = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(try daemon.kernelCount(name) == 3)

            let door = try #require(doorPID(upstream: socket))
            kill(door, SIGKILL)
            // Made while no door runs: the kernel completes it in procrefd's listening socket.
            let inTheGap = try FrontConnection(port: port)
            defer { inTheGap.close() }
            #expect(try first.exchange("PING\r\n", expectClosed: true) == "")
            #expect(try inTheGap.exchange("PING\r\n") == "+PONG\r\n")
            #expect(try daemon.kernelCount(name) == 2)  // the lease and the new connection
            let replacement = try #require(doorPID(upstream: socket))
            #expect(replacement != door)
        }
    }

    @Test("kill -9 of procrefd: open connections keep working and new ones are forwarded; the next procrefd takes the same door back, with its port and its connections")
    func procrefdKilled() throws {
        let first = try DaemonHarness()
        defer { first.shutdown() }
        let name = first.uniqueName("front")
        let (port, socket) = try defineRedis(first, name)
        let held = try FrontConnection(port: port)
        defer { held.close() }
        #expect(try held.exchange("PING\r\n") == "+PONG\r\n")
        let door = try #require(doorPID(upstream: socket))

        first.crash()
        #expect(try held.exchange("PING\r\n") == "+PONG\r\n")
        // Accepted and forwarded with no procrefd at all: the service is running.
        let whileDown = try FrontConnection(port: port)
        defer { whileDown.close() }
        #expect(try whileDown.exchange("PING\r\n") == "+PONG\r\n")
        #expect(try first.kernelCount(name) == 2)

        let second = try DaemonHarness(stateDir: first.stateDir)
        defer { second.shutdown() }
        second.adoptServiceName(name)
        #expect(try second.service(name)["state"] as? String == "ready")
        #expect(eventually { (try? second.service(name)["connections"] as? Int) == 2 })
        #expect(try second.service(name)["front"] as? [String] == ["127.0.0.1:\(port)"])
        #expect(doorPID(upstream: socket) == door)
        #expect(try held.exchange("PING\r\n") == "+PONG\r\n")
        let ping = try runProgram("/usr/bin/redis-cli", ["-h", "127.0.0.1", "-p", String(port), "ping"], timeout: 20)
        #expect(ping.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "PONG")
        #expect(try second.kernelCount(name) == 2)

        held.close()
        whileDown.close()
        #expect(eventually(timeout: 15) { (try? second.service(name)["state"] as? String) == "stopped" })
        #expect(try second.kernelCount(name) == 0)
        #expect(isAlive(door))  // the same door goes on listening for the next client
    }

    @Test("a connection to a stopped service while procrefd is down is held, and counted; the next procrefd takes the door back and starts the service for it")
    func heldUntilProcrefdReturns() throws {
        let first = try DaemonHarness()
        defer { first.shutdown() }
        let name = first.uniqueName("front")
        let (port, socket) = try defineRedis(first, name)
        #expect(try first.service(name)["state"] as? String == "stopped")
        let door = try #require(doorPID(upstream: socket))

        first.crash()
        let waiting = try FrontConnection(port: port)
        defer { waiting.close() }
        try waiting.send("PING\r\n")
        #expect(eventually { (try? first.kernelCount(name)) == 1 })  // held, and counted

        let second = try DaemonHarness(stateDir: first.stateDir)
        defer { second.shutdown() }
        second.adoptServiceName(name)
        #expect(try waiting.receive(timeout: 20) == "+PONG\r\n")
        #expect(try second.service(name)["state"] as? String == "ready")
        #expect(doorPID(upstream: socket) == door)
    }

    @Test("a door left by a crashed procrefd that does not come back (stopped) is killed and replaced by a new one")
    func strayDoorReplaced() throws {
        let first = try DaemonHarness()
        defer { first.shutdown() }
        let name = first.uniqueName("front")
        let (_, socket) = try defineRedis(first, name)
        let door = try #require(doorPID(upstream: socket))
        first.crash()
        kill(door, SIGSTOP)

        let second = try DaemonHarness(stateDir: first.stateDir)
        defer { second.shutdown() }
        second.adoptServiceName(name)
        #expect(eventually(timeout: 15) { !isAlive(door) })
        let replacement = try #require(eventually(timeout: 15) { doorPID(upstream: socket) != nil } ? doorPID(upstream: socket) : nil)
        #expect(replacement != door)
        // The killed door took the old port with it: the new one listens where the kernel says.
        #expect(eventually(timeout: 15) { !((try? second.service(name)["front"] as? [String]) ?? []).isEmpty })
        let front = try #require(try second.service(name)["front"] as? [String])
        let newPort = try #require(UInt16(front.first?.split(separator: ":").last ?? ""))
        let ping = try runProgram("/usr/bin/redis-cli", ["-h", "127.0.0.1", "-p", String(newPort), "ping"], timeout: 20)
        #expect(ping.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "PONG")
    }

    @Test("hand-off: the door outlives procrefd, and the next one takes it back; bytes forwarded are counted")
    func doorOutlivesHandOff() throws {
        let first = try DaemonHarness(extraArguments: ["--on-exit", "handoff"])
        defer { first.shutdown() }
        let name = first.uniqueName("front")
        let (port, socket) = try defineRedis(first, name, extra: ["linger_ms": 60_000])
        let held = try FrontConnection(port: port)
        defer { held.close() }
        #expect(try held.exchange("PING\r\n") == "+PONG\r\n")
        let door = try #require(doorPID(upstream: socket))

        first.terminate()
        #expect(try held.exchange("PING\r\n") == "+PONG\r\n")
        let second = try DaemonHarness(stateDir: first.stateDir)
        defer { second.shutdown() }
        second.adoptServiceName(name)
        #expect(eventually { (try? second.service(name)["connections"] as? Int) == 1 })
        #expect(doorPID(upstream: socket) == door)
        let metrics = try second.unix.get("/metrics").text
        #expect(metrics.contains("procrefd_front_bytes_total{service=\"\(name)\",direction=\"client\"}"))
    }

    @Test("a connection held during a start that fails is closed, and the count returns to 0")
    func failedStartClosesHeld() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("front")
            let socket = "\(daemon.stateDir)/\(name).never.sock"
            let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: [
                "start": ["sleep", "30"], "health": ["unix": socket, "timeout_ms": 200],
                "front": ["127.0.0.1:0"], "upstream": "unix:\(socket)", "ready_timeout_ms": 1_000, "restart_limit": 0,
            ])
            #expect(response.status == 201)
            let front = try #require(try daemon.service(name)["front"] as? [String])
            let port = try #require(UInt16(front.first?.split(separator: ":").last ?? ""))
            let held = try FrontConnection(port: port)
            defer { held.close() }
            #expect(eventually { (try? daemon.kernelCount(name)) == 1 })
            #expect(try held.exchange("PING\r\n", expectClosed: true, timeout: 15) == "")
            #expect(eventually { (try? daemon.kernelCount(name)) == 0 })
            #expect(eventually { (try? daemon.eventKinds(service: name).contains("service.start_failed")) == true })
        }
    }

    @Test("a Unix socket front from the config file: redis-cli -s starts redis through it; once it leaves, redis stops")
    func unixFrontFromConfig() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let name = "front-\(UUID().uuidString.prefix(8).lowercased())"
        let (front, upstream) = ("\(dir)/front.sock", "\(dir)/redis.sock")
        let config = """
            [services.\(name)]
            start = ["redis-server", "--port", "0", "--unixsocket", "\(upstream)", "--save", "", "--appendonly", "no"]
            health = { unix = "\(upstream)" }
            front = ["unix:\(front)"]
            upstream = "unix:\(upstream)"
            """
        try withDaemon(config: config) { daemon in
            daemon.adoptServiceName(name)
            defer { killProcesses(mentioning: dir) }
            #expect(Files.kind(front)?.isSocket == true)
            let ping = try runProgram("/usr/bin/redis-cli", ["-s", front, "ping"], timeout: 20)
            #expect(ping.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "PONG")
            #expect(try daemon.service(name)["front"] as? [String] == ["unix:\(front)"])
            #expect(eventually { (try? daemon.service(name)["state"] as? String) == "stopped" })
        }
    }

    @Test("socket activation: a connection to a stopped service starts it with the listening socket as descriptor 3 (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES); connections are not counted, so it lingers and stops, and the next connection starts it again")
    func socketActivation() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("act")
            let body: [String: Any] = [
                "start": ["python3", activatedServiceScript], "front": ["127.0.0.1:0"], "front_mode": "activate", "linger_ms": 300,
            ]
            let defined = try daemon.unix.send("PUT", "/v1/services/\(name)", json: body)
            try #require(defined.status == 201, "\(defined.text)")
            let status = try daemon.service(name)
            #expect(status["state"] as? String == "stopped")
            #expect(status["connections"] is NSNull)
            let front = try #require(status["front"] as? [String])
            let port = try #require(UInt16(front.first?.split(separator: ":").last ?? ""))

            for round in 1...2 {
                let client = try FrontConnection(port: port)
                defer { client.close() }
                #expect(try client.receive(timeout: 20) == "activated \(name) 1\r\n", "round \(round)")
                #expect(try daemon.kernelCount(name) == 0)
                #expect(eventually(timeout: 15) { (try? daemon.service(name)["state"] as? String) == "stopped" }, "round \(round)")
            }
            let kinds = try daemon.eventKinds(service: name)
            #expect(kinds.filter { $0 == "front.first_connection" }.count == 2)
            #expect(kinds.filter { $0 == "service.stopped" }.count == 2)
        }
    }

    @Test("front_audit = connections: each connection's open (with its peer) and close (with its bytes each way) is recorded")
    func connectionAudit() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("front")
            let (port, _) = try defineRedis(daemon, name, extra: ["front_audit": "connections"])
            let client = try FrontConnection(port: port)
            #expect(try client.exchange("PING\r\n") == "+PONG\r\n")
            client.close()
            #expect(eventually { (try? daemon.eventKinds(service: name).contains("front.connection_closed")) == true })
            let events = try daemon.events(service: name)
            let opened = try #require(events.first { $0["kind"] as? String == "front.connection_opened" }?["detail"] as? [String: Any])
            #expect((opened["peer"] as? String)?.hasPrefix("127.0.0.1:") == true)
            let closed = try #require(events.first { $0["kind"] as? String == "front.connection_closed" }?["detail"] as? [String: Any])
            #expect(closed["connection"] as? Int == opened["connection"] as? Int)
            #expect(closed["bytes_up"] as? Int == 6)  // PING\r\n
            #expect(closed["bytes_down"] as? Int == 7)  // +PONG\r\n
        }
    }

    @Test("a config reload that adds a front address: the open connection keeps flowing, the kept address keeps its port, and the new one answers")
    func reloadAddsAddress() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/procrefd.toml", upstream = "\(dir)/redis.sock"
        let name = "front-\(UUID().uuidString.prefix(8).lowercased())"
        func config(_ front: String) -> String {
            """
            [services.\(name)]
            start = ["redis-server", "--port", "0", "--unixsocket", "\(upstream)", "--save", "", "--appendonly", "no"]
            health = { unix = "\(upstream)" }
            front = [\(front)]
            upstream = "unix:\(upstream)"
            linger_ms = 60000
            """
        }
        try config("\"127.0.0.1:0\"").write(toFile: path, atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(stateDir: dir, extraArguments: ["--config", path])
        defer { daemon.shutdown() }
        daemon.adoptServiceName(name)
        let before = try #require(try daemon.service(name)["front"] as? [String])
        let port = try #require(UInt16(before.first?.split(separator: ":").last ?? ""))
        let held = try FrontConnection(port: port)
        defer { held.close() }
        #expect(try held.exchange("PING\r\n") == "+PONG\r\n")

        try config("\"127.0.0.1:0\", \"127.0.0.2:0\"").write(toFile: path, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(eventually { ((try? daemon.service(name)["front"] as? [String]) ?? []).count == 2 })
        let after = try #require(try daemon.service(name)["front"] as? [String])
        #expect(after.contains("127.0.0.1:\(port)"))
        #expect(try held.exchange("PING\r\n") == "+PONG\r\n")
        let added = try #require(after.first { $0.hasPrefix("127.0.0.2:") }.flatMap { UInt16($0.split(separator: ":").last ?? "") })
        let fresh = try FrontConnection(port: added, host: "127.0.0.2")
        defer { fresh.close() }
        #expect(try fresh.exchange("PING\r\n") == "+PONG\r\n")
        let kept = try FrontConnection(port: port)
        defer { kept.close() }
        #expect(try kept.exchange("PING\r\n") == "+PONG\r\n")
        #expect(try daemon.kernelCount(name) == 3)
    }

    @Test("bad fronts get a 422 naming the field, and nothing is defined")
    func badFronts() throws {
        try withDaemon { daemon in
            let taken = try Listener.tcp(host: "127.0.0.1", port: 0)
            defer { Descriptor.close(taken.fd) }
            let name = daemon.uniqueName("front")
            let base: [String: Any] = ["start": ["sleep", "30"], "upstream": "127.0.0.1:9"]
            let cases: [([String: Any], String)] = [
                (["front": ["127.0.0.1:9"]], "is the upstream itself"),
                (["front": ["127.0.0.1:\(taken.port)"]], "in use"),
                (["front": ["localhost:80"]], "numeric host"),
                (["front": ["127.0.0.1:7001"], "upstream": NSNull()], "upstream"),
                (["front": ["127.0.0.1:7001"], "slots": 2], "slots"),
                (["front": ["127.0.0.1:7001", "127.0.0.1:7001"]], "twice"),
                (["front": ["0.0.0.0:7001"]], "loopback"),
                (["front": ["unix:\(daemon.stateDir)/front.sock"]], "loopback"),
                (["front": ["127.0.0.1:7001"], "front_mode": "magic"], "front_mode"),
                (["front": ["127.0.0.1:7001"], "front_mode": "activate"], "does not apply with front_mode"),
                (["front": ["127.0.0.1:7001"], "front_audit": "everything"], "front_audit"),
                (["front_audit": "connections", "upstream": NSNull()], "needs front"),
            ]
            for (extra, message) in cases {
                var body = base.merging(extra) { $1 }
                body = body.filter { !($0.value is NSNull) }
                let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: body)
                #expect(response.status == 422, "\(extra)")
                #expect(response.text.contains(message), "\(response.text)")
            }
            #expect(try daemon.unix.get("/v1/services/\(name)").status == 404)
            #expect(try daemon.events(service: name).isEmpty)
        }
    }
}

/// A client's TCP connection to a front door.
final class FrontConnection: @unchecked Sendable {
    private var fd: Int32

    init(port: UInt16, host: String = "127.0.0.1") throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr(host)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, connected == 0 else {
            let failure = errno
            close()
            throw TestHTTPClient.Failure(description: "connect to front port \(port): errno \(failure)")
        }
    }

    /// Sends `request` and reads the answer (up to its first CRLF). With `expectClosed`, the
    /// door is expected to close the connection instead: "" once it has.
    func exchange(_ request: String, expectClosed: Bool = false, timeout: Double = 10) throws -> String {
        try send(request)
        return try receive(expectClosed: expectClosed, timeout: timeout)
    }

    func send(_ request: String) throws {
        let bytes = Array(request.utf8)
        guard Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            throw TestHTTPClient.Failure(description: "send: errno \(errno)")
        }
    }

    /// Reads exactly `count` bytes (fewer only if the connection ends first).
    func receive(exactly count: Int, timeout: Double) throws -> [UInt8] {
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let deadline = Date().addingTimeInterval(timeout)
        while answer.count < count, Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let n = recv(fd, &buffer, min(buffer.count, count - answer.count), 0)
            if n <= 0 { break }
            answer += buffer[0..<n]
        }
        return answer
    }

    /// Reads an answer (up to its first CRLF), or "" once the door closed the connection
    /// when `expectClosed`.
    func receive(expectClosed: Bool = false, timeout: Double = 10) throws -> String {
        var answer: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 512)
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return expectClosed ? "" : String(decoding: answer, as: UTF8.self) }
            answer += buffer[0..<n]
            if !expectClosed, answer.count >= 2, answer.suffix(2) == [13, 10] { return String(decoding: answer, as: UTF8.self) }
        }
        throw TestHTTPClient.Failure(description: "no answer within \(timeout) s (got \(String(decoding: answer, as: UTF8.self).debugDescription))")
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
