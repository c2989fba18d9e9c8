import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// A shared host: web pages, other local users and their services are strangers.
@Suite("Shared host")
struct SharedHostTests {
    func readToken(_ daemon: DaemonHarness) throws -> String {
        try String(contentsOfFile: "\(daemon.stateDir)/read-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("DNS rebinding: a Host that is not this daemon gets 421 on every listener, and nothing happens")
    func rebinding() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("dns")
            try daemon.defineSocketService(name)
            let eventsBefore = try daemon.events().count
            let evil = ["Host": "attacker.example:\(daemon.port)"]
            for (client, method, path) in [
                (daemon.anonymous, "GET", "/v1/status"), (daemon.anonymous, "GET", "/v1/services"), (daemon.anonymous, "GET", "/metrics"),
                (daemon.tcp, "GET", "/v1/events"), (daemon.tcp, "POST", "/v1/services/\(name)/leases"), (daemon.unix, "GET", "/v1/status"),
                (daemon.unix, "POST", "/v1/services/\(name)/leases"), (daemon.anonymous, "GET", "/v1/nothing"),
            ] {
                let response = try client.send(method, path, json: method == "POST" ? ["ttl_ms": 60_000] : nil, headers: evil)
                #expect(response.status == 421, "\(method) \(path): \(response.status)")
                #expect(response.contentType == "application/problem+json")
                #expect(response.headers["x-content-type-options"] == "nosniff")
                #expect(response.text.contains("attacker.example") && !response.text.contains(name))
            }
            // Loopback names, with any port, still answer.
            for host in ["localhost", "127.0.0.1:\(daemon.port)", "[::1]:\(daemon.port)"] {
                #expect(try daemon.anonymous.send("GET", "/v1/status", headers: ["Host": host]).status == 200, "\(host)")
            }
            #expect(try daemon.events().count == eventsBefore)
            #expect(try daemon.kernelCount(name) == 0)
        }
    }

    @Test("allowed_hosts and the listen address are accepted as Host")
    func allowedHosts() throws {
        try withDaemon(config: "[security]\nallowed_hosts = [\"procrefd.box.example\"]\n") { daemon throws in
            #expect(try daemon.anonymous.send("GET", "/v1/status", headers: ["Host": "procrefd.box.example:\(daemon.port)"]).status == 200)
            #expect(try daemon.anonymous.send("GET", "/v1/status", headers: ["Host": "other.box.example"]).status == 421)
        }
    }

    @Test("browsers are refused on the Unix socket, and cross-site changes over TCP even with the token")
    func browsers() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("csrf")
            try daemon.defineSocketService(name)
            let eventsBefore = try daemon.events().count
            // A cross-site form POST relayed to the socket, as a local proxy would.
            let form = try daemon.unix.send(
                "POST", "/v1/daemon/stop", rawBody: "mode=drain",
                headers: ["Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"])
            #expect(form.status == 403)
            #expect(form.json["type"] as? String == "urn:procrefd:problem:browser-refused")
            let fetchSite = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000], headers: ["Sec-Fetch-Site": "cross-site"])
            #expect(fetchSite.status == 403)
            #expect(try daemon.unix.send("GET", "/v1/status", headers: ["Sec-Fetch-Site": "same-origin"]).status == 403)

            let crossSite = try daemon.tcp.send(
                "POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000], headers: ["Origin": "http://evil.example"])
            #expect(crossSite.status == 403)
            #expect(crossSite.json["type"] as? String == "urn:procrefd:problem:cross-origin-refused")
            #expect(try daemon.tcp.send("POST", "/v1/services/\(name)/restart", headers: ["Origin": "null"]).status == 403)
            #expect(try daemon.events().count == eventsBefore)
            #expect(try daemon.kernelCount(name) == 0)
            #expect(try daemon.unix.get("/v1/health").status == 200)  // still running

            // The dashboard's own origin may act with the token.
            let sameOrigin = try daemon.tcp.send(
                "POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000],
                headers: ["Host": "127.0.0.1:\(daemon.port)", "Origin": "http://127.0.0.1:\(daemon.port)"])
            #expect(sameOrigin.status == 201)
        }
    }

    @Test("every API answer says nosniff and no-store")
    func securityHeaders() throws {
        try withDaemon { daemon in
            for path in ["/v1/status", "/v1/health", "/v1/services", "/v1/nothing", "/metrics"] {
                let response = try daemon.anonymous.get(path)
                #expect(response.headers["x-content-type-options"] == "nosniff", "\(path)")
                #expect(response.headers["cache-control"] == "no-store", "\(path)")
            }
            #expect(try daemon.unix.get("/v1/status").headers["cache-control"] == "no-store")
        }
    }

    @Test("over TCP, logs, events and process lookups need a token; absent and unmanaged pids answer alike")
    func protectedReads() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("reads")
            try daemon.defineSocketService(name)
            let reader = TestHTTPClient(endpoint: .tcp(port: daemon.port), token: try readToken(daemon))
            for path in ["/v1/events", "/v1/events?wait_ms=100", "/v1/services/\(name)/logs", "/v1/processes/1"] {
                let refused = try daemon.anonymous.get(path)
                #expect(refused.status == 401, "\(path)")
                #expect(refused.text.contains("read token"), "\(path)")
            }
            #expect(try reader.get("/v1/events").status == 200)
            #expect(try reader.get("/v1/services/\(name)/logs").status == 200)
            #expect(try daemon.tcp.get("/v1/events").status == 200)
            for path in ["/v1/status", "/v1/services", "/v1/services/\(name)", "/metrics", "/v1/leases"] {
                #expect(try daemon.anonymous.get(path).status == 200, "\(path)")
            }
            // pid 1 exists and is not managed; a pid past pid_max does not exist.
            let unmanaged = try reader.get("/v1/processes/1")
            let absent = try reader.get("/v1/processes/4194305")
            #expect(unmanaged.status == 404)
            #expect(unmanaged.status == absent.status)
            #expect(unmanaged.json["type"] as? String == absent.json["type"] as? String)
            #expect((unmanaged.json["detail"] as? String)?.replacingOccurrences(of: "1", with: "N")
                    == (absent.json["detail"] as? String)?.replacingOccurrences(of: "4194305", with: "N"))
            // The read token changes nothing.
            #expect(try reader.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 1_000]).status == 401)
        }
    }

    @Test("tcp_open_reads opens the named reads, and only those")
    func openReads() throws {
        try withDaemon(config: "[security]\ntcp_open_reads = [\"status\", \"events\"]\n") { daemon throws in
            #expect(try daemon.anonymous.get("/v1/events").status == 200)
            #expect(try daemon.anonymous.get("/v1/status").status == 200)
            #expect(try daemon.anonymous.get("/metrics").status == 401)
            #expect(try daemon.anonymous.get("/v1/services").status == 401)
            #expect(try daemon.anonymous.get("/v1/processes/1").status == 401)
        }
    }

    @Test("a body announced too large gets 413 at once, and the connection is closed")
    func oversizedBody() throws {
        try withDaemon { daemon in
            for client in [daemon.tcp, daemon.unix] {
                let head = "POST /v1/services/x/leases HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    + (client.token.map { "Authorization: Bearer \($0)\r\n" } ?? "") + "Content-Length: 100000000\r\n\r\n"
                let response = try client.sendHeadOnly(head, timeoutSeconds: 10)
                #expect(response.status == 413)
                #expect(response.contentType == "application/problem+json")
            }
        }
    }

    @Test("a state dir another user owns, or one under a directory others may write, is refused at start, naming the path")
    func stateDirectoryTrust() throws {
        let base = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let nobody = try #require(Accounts.user("nobody"))
        let theirs = "\(base)/theirs"
        try FileManager.default.createDirectory(atPath: theirs, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        #expect(chown(theirs, nobody.uid, nobody.gid) == 0)
        let shared = "\(base)/shared"
        try FileManager.default.createDirectory(atPath: "\(shared)/state", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        #expect(chmod(shared, 0o777) == 0)
        for (dir, named) in [(theirs, theirs), ("\(shared)/state", shared)] {
            let run = try runProcrefd(["serve", "--state-dir", dir, "--port", "0"], timeout: 30)
            #expect(run.code == 1, "\(dir): \(run.stderr)")
            #expect(run.stderr.contains(named), "\(run.stderr)")
            #expect(Files.kind("\(dir)/procrefd.db") == nil && Files.kind("\(dir)/token") == nil)
        }
    }
}

/// Bounded resources any local user could otherwise exhaust without a token.
@Suite("Exhaustion")
struct ExhaustionTests {
    /// Opens an event stream on the Unix socket and keeps it; returns the socket and what
    /// the server answered first.
    func openStream(_ daemon: DaemonHarness) throws -> (fd: Int32, head: String) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = "\(daemon.stateDir)/procrefd.sock"
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(connected == 0)
        let request = "GET /v1/events?after=now HTTP/1.1\r\nHost: localhost\r\nAccept: application/x-ndjson\r\n\r\n"
        _ = request.withCString { write(fd, $0, strlen($0)) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return (fd, n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : "")
    }

    @Test("streams, follows and long-polls are capped by limits.max_streams: past it 503 with Retry-After, and a freed place is reused")
    func streamCap() throws {
        try withDaemon(config: "[limits]\nmax_streams = 2\n") { daemon throws in
            let first = try openStream(daemon)
            let second = try openStream(daemon)
            #expect(first.head.hasPrefix("HTTP/1.1 200") && second.head.hasPrefix("HTTP/1.1 200"), "\(first.head) \(second.head)")
            let third = try openStream(daemon)
            #expect(third.head.hasPrefix("HTTP/1.1 503"), "\(third.head)")
            #expect(third.head.lowercased().contains("retry-after: 1"))
            close(third.fd)
            let longPoll = try daemon.unix.get("/v1/events?after=now&wait_ms=5000")
            #expect(longPoll.status == 503)
            #expect(longPoll.json["type"] as? String == "urn:procrefd:problem:too-many-streams")
            let name = daemon.uniqueName("cap")
            try daemon.defineSocketService(name)
            #expect(try daemon.unix.get("/v1/services/\(name)/logs?follow=true").status == 503)
            #expect(try daemon.unix.get("/v1/events?limit=1").status == 200)  // plain reads are not held
            close(first.fd)
            // A suspended stream learns its client left when it next writes: a new event (or
            // the 15 s heartbeat) makes it write.
            try daemon.defineSocketService(daemon.uniqueName("wake"))
            #expect(eventually(timeout: 20) { (try? openStream(daemon)).map { stream in defer { close(stream.fd) }; return stream.head.hasPrefix("HTTP/1.1 200") } ?? false })
            close(second.fd)
        }
    }

    @Test("a log tail is streamed from the file: exact last lines of a large log, with or without a final newline")
    func streamedTail() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("bigl")
            try daemon.defineSocketService(name)
            let log = "\(daemon.stateDir)/logs/\(name).log"
            let lines = (0..<120_000).map { "line \($0) " + String(repeating: "x", count: 40) }
            try (lines.joined(separator: "\n") + "\n").write(toFile: log, atomically: false, encoding: .utf8)
            let tail = try daemon.unix.get("/v1/services/\(name)/logs?tail=10000")
            #expect(tail.status == 200)
            #expect(tail.headers["transfer-encoding"] == "chunked")
            #expect(tail.text == lines.suffix(10_000).joined(separator: "\n") + "\n")
            try "a\nb\nc".write(toFile: log, atomically: false, encoding: .utf8)
            #expect(try daemon.unix.get("/v1/services/\(name)/logs?tail=2").text == "b\nc")
            #expect(try daemon.unix.get("/v1/services/\(name)/logs?tail=0").text == "")
            let cli = try runProcrefd(["logs", name, "-n", "2", "--state-dir", daemon.stateDir])
            #expect(cli.stdout == "b\nc", "\(cli.stdout)")
        }
    }
}

/// Semaphore keys someone else holds.
@Suite("Squatted keys")
struct SquattedKeyTests {
    @Test("keys of a service squatted before start are skipped: the daemon starts, the service gets the next free key, the squatter's sets stay")
    func squatted() throws {
        let stateDir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: stateDir) }
        let name = "squat-\(UUID().uuidString.prefix(8).lowercased())"
        let identity = try #require(Files.identity(stateDir))
        let scope = "\(identity.device).\(identity.inode)"
        // Sets this state dir did not make, at the first three keys its service would take.
        var squatters: [SemaphoreSet] = []
        for attempt in 0..<3 {
            if let set = try SemaphoreSet.create(key: SemaphoreSet.key(scope: scope, service: name, attempt: attempt), mode: 0o644) {
                squatters.append(set)
            }
        }
        defer { for set in squatters { try? set.remove() } }
        try #require(squatters.count == 3)
        try "[services.\(name)]\nslots = 1\n".write(toFile: "\(stateDir)/h.toml", atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(stateDir: stateDir, extraArguments: ["--config", "\(stateDir)/h.toml"])
        let set = daemon.semaphoreSet(name)
        defer {
            daemon.shutdown()
            try? set?.remove()
        }
        let key = try daemon.service(name)["key"] as? Int
        #expect(key == Int(SemaphoreSet.key(scope: scope, service: name, attempt: 3)))
        #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
        for squatter in squatters { #expect(try squatter.count() == 0) }
    }
}
