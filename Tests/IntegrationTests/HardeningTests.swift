import Foundation
import Glibc
import ProcrefdClient
import Testing

/// Limits, idempotent acquire, the auth model, metrics, and the status ETag.
@Suite("Hardening")
struct HardeningTests {
    /// A daemon with `config` as its config file.
    func daemon(config: String) throws -> DaemonHarness {
        let dir = try makeTemporaryDirectory()
        try config.write(toFile: "\(dir)/h.toml", atomically: true, encoding: .utf8)
        return try DaemonHarness(stateDir: dir, extraArguments: ["--config", "\(dir)/h.toml"])
    }

    func cleanup(_ daemon: DaemonHarness) {
        daemon.shutdown()
        try? FileManager.default.removeItem(atPath: daemon.stateDir)
    }

    @Test("lease and service limits refuse with a clear error, an audit record, and no kernel change")
    func limits() throws {
        let daemon = try daemon(config: "[limits]\nmax_leases_per_service = 3\nmax_services = 3\n")
        defer { cleanup(daemon) }
        let name = "lim-\(UUID().uuidString.prefix(6).lowercased())"
        daemon.adoptServiceName(name)
        try daemon.defineSocketService(name)
        for _ in 0..<3 {
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
        }
        let refused = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
        #expect(refused.status == 429)
        #expect(refused.headers["retry-after"] == "1")
        #expect(refused.json["type"] as? String == "urn:procrefd:problem:too-many-leases")
        #expect(try daemon.kernelCount(name) == 3)
        #expect(try daemon.eventKinds(service: name).last == "lease.refused")

        // Regression (found by the flood test): concurrent acquires must not all pass the
        // limit check before any of them is granted.
        let racer = "race-\(UUID().uuidString.prefix(6).lowercased())"
        daemon.adoptServiceName(racer)
        try daemon.defineSocketService(racer)
        let results = Mutex50()
        DispatchQueue.concurrentPerform(iterations: 30) { _ in
            results.append(try? daemon.unix.send("POST", "/v1/services/\(racer)/leases", rawBody: #"{"ttl_ms": 60000}"#))
        }
        #expect(results.values.filter { $0?.status == 201 }.count == 3)
        #expect(results.values.filter { $0?.status == 429 }.count == 27)
        #expect(try daemon.kernelCount(racer) == 3)
        // Refusals are audited, but a burst folds into one record per second.
        #expect(try daemon.eventKinds(service: racer).filter { $0 == "lease.refused" }.count <= 3)

        let second = "lim2-\(UUID().uuidString.prefix(6).lowercased())"
        daemon.adoptServiceName(second)
        try daemon.defineSocketService(second)
        let third = try daemon.unix.send("PUT", "/v1/services/lim3-x", json: ["start": ["true"]])
        #expect(third.status == 409)
        #expect(third.json["type"] as? String == "urn:procrefd:problem:too-many-services")
        #expect(try daemon.unix.get("/v1/services/lim3-x").status == 404)

        let unknown = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000, "tll": 5])
        #expect(unknown.status == 422)
        #expect((unknown.json["detail"] as? String)?.contains("tll") == true)
        let unknownNested = try daemon.unix.send("PUT", "/v1/services/\(second)", json: ["start": ["true"], "health": ["tcp": "127.0.0.1:1", "timeout": 3]])
        #expect(unknownNested.status == 422)
        #expect((unknownNested.json["detail"] as? String)?.contains("health.timeout") == true)
    }

    @Test("Idempotency-Key: a retry gets the same lease, another body is refused, concurrent retries make one lease")
    func idempotency() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("idem")
            try daemon.defineSocketService(name)
            let body: [String: Any] = ["ttl_ms": 60_000, "holder": "job-7"]
            let first = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: body, headers: ["Idempotency-Key": "k-1"])
            #expect(first.status == 201)
            let again = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: body, headers: ["Idempotency-Key": "k-1"])
            #expect(again.status == 200)
            #expect(again.json["id"] as? String == first.json["id"] as? String)
            #expect(again.json["count"] as? Int == 1)
            #expect(try daemon.kernelCount(name) == 1)
            let other = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 1000], headers: ["Idempotency-Key": "k-1"])
            #expect(other.status == 422)
            #expect(other.json["type"] as? String == "urn:procrefd:problem:idempotency-key-reused")
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: body, headers: ["Idempotency-Key": ""]).status == 400)

            let results = Mutex50()
            DispatchQueue.concurrentPerform(iterations: 10) { _ in
                results.append(try? daemon.unix.send(
                    "POST", "/v1/services/\(name)/leases", rawBody: #"{"ttl_ms": 60000, "holder": "job-8"}"#,
                    headers: ["Idempotency-Key": "k-2"]))
            }
            let ids = Set(results.values.compactMap { $0?.json["id"] as? String })
            #expect(ids.count == 1)
            #expect(results.values.filter { $0?.status == 201 }.count == 1)
            #expect(results.values.filter { $0?.status == 200 }.count == 9)
            #expect(try daemon.kernelCount(name) == 2)
        }
    }

    @Test("a read token guards reads over TCP; health stays open; the Unix socket needs none")
    func readToken() throws {
        let daemon = try daemon(config: "[security]\ntcp_reads_need_token = true\n")
        defer { cleanup(daemon) }
        let readToken = try String(contentsOfFile: "\(daemon.stateDir)/read-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try daemon.anonymous.get("/v1/health").status == 200)
        #expect(try daemon.anonymous.get("/v1/status").status == 401)
        #expect(try daemon.anonymous.get("/metrics").status == 401)
        let reader = TestHTTPClient(endpoint: .tcp(port: daemon.port), token: readToken)
        #expect(try reader.get("/v1/status").status == 200)
        #expect(try reader.get("/v1/events").status == 200)
        #expect(try reader.send("PUT", "/v1/services/ro-x", json: ["start": ["true"]]).status == 401)
        #expect(try daemon.tcp.get("/v1/status").status == 200)
        #expect(try daemon.unix.get("/v1/status").status == 200)
    }

    @Test("socket_mode 0660 and socket_group share the Unix socket with a group")
    func socketGroup() throws {
        let daemon = try daemon(config: "socket_mode = \"0660\"\nsocket_group = \"nogroup\"\n")
        defer { cleanup(daemon) }
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(daemon.stateDir)/procrefd.sock")
        #expect(attributes[.posixPermissions] as? Int == 0o660)
        #expect(attributes[.groupOwnerAccountName] as? String == "nogroup")
        #expect(try daemon.unix.get("/v1/health").status == 200)
    }

    @Test("procrefd refuses a group-writable state dir or token file")
    func unsafePermissions() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o770)
        let open = try runProcrefd(["serve", "--state-dir", dir, "--port", "0"], timeout: 30)
        #expect(open.code == 1)
        #expect(open.stderr.contains("writable by group or others"), "\(open.stderr)")
        chmod(dir, 0o700)
        try "secret\n".write(toFile: "\(dir)/token", atomically: false, encoding: .utf8)
        chmod("\(dir)/token", 0o666)
        let token = try runProcrefd(["serve", "--state-dir", dir, "--port", "0"], timeout: 30)
        #expect(token.code != 0)
        #expect(token.stderr.contains("token"), "\(token.stderr)")
        #expect(try String(contentsOfFile: "\(dir)/token", encoding: .utf8) == "secret\n")
    }

    @Test("only allowed programs can be defined over the API when an allowlist is set")
    func programAllowlist() throws {
        let daemon = try daemon(config: "[security]\napi_programs = [\"/usr/bin/python3\"]\napi_users = [\"nobody\"]\n")
        defer { cleanup(daemon) }
        let refused = try daemon.unix.send("PUT", "/v1/services/allow-x", json: ["start": ["sh", "-c", "true"]])
        #expect(refused.status == 403)
        #expect(refused.json["type"] as? String == "urn:procrefd:problem:program-not-allowed")
        let healthRefused = try daemon.unix.send("PUT", "/v1/services/allow-y", json: [
            "start": ["/usr/bin/python3", "-c", "pass"], "health": ["exec": ["rm", "-rf", "/nonexistent"]],
        ])
        #expect(healthRefused.status == 403)
        #expect(try daemon.unix.send("PUT", "/v1/services/allow-z", json: ["start": ["/usr/bin/python3", "-c", "pass"], "user": "nobody"]).status == 201)
        daemon.adoptServiceName("allow-z")
    }

    @Test("metrics expose leases, lease ends, services and HTTP requests in Prometheus text")
    func metrics() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("metric")
            try daemon.defineSocketService(name)
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            _ = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            _ = try daemon.unix.send("DELETE", "/v1/leases/\(grant.json["id"] as? String ?? "")")
            let response = try daemon.anonymous.get("/metrics")
            #expect(response.status == 200)
            #expect(response.contentType.hasPrefix("text/plain"))
            let text = response.text
            #expect(text.contains("procrefd_lease_acquires_total{service=\"\(name)\"} 2"))
            #expect(text.contains("procrefd_leases_active{service=\"\(name)\"} 1"))
            #expect(text.contains("procrefd_kernel_refcount{service=\"\(name)\"} 1"))
            #expect(text.contains("procrefd_service_state{service=\"\(name)\",state=\"ready\"} 1"))
            #expect(text.contains("procrefd_lease_ends_total{service=\"\(name)\",reason=\"released\"} 1"))
            #expect(text.contains("procrefd_lease_acquire_duration_seconds_bucket"))
            #expect(text.contains("procrefd_sqlite_commit_duration_seconds_count"))
            #expect(text.contains("procrefd_http_requests_total{route=\"/v1/services/{name}/leases\",method=\"POST\",status=\"201\"} 2"))
            #expect(text.contains("# HELP procrefd_kernel_refcount "))

            // Prometheus' own linter has nothing to say (HELP for every metric, no reserved suffix).
            let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
            let tool = try #require(promtool, "promtool is missing: Debian's prometheus package (make test installs it)")
            let check = Process()
            check.executableURL = URL(fileURLWithPath: tool)
            check.arguments = ["check", "metrics"]
            let input = Pipe(), output = Pipe()
            check.standardInput = input
            check.standardOutput = output
            check.standardError = output
            try check.run()
            input.fileHandleForWriting.write(Data(response.body))
            try input.fileHandleForWriting.close()
            let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            check.waitUntilExit()
            #expect(check.terminationStatus == 0, "\(said)")
            #expect(said.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(said)")
        }
    }

    @Test("status: service filter, and a weak ETag that yields 304 until something changes")
    func statusETag() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("etag")
            try daemon.defineSocketService(name)
            let first = try daemon.anonymous.get("/v1/status")
            let tag = try #require(first.headers["etag"])
            #expect(tag.hasPrefix("W/\""))
            #expect(first.json["uptime_ms"] is Int)
            let same = try daemon.anonymous.send("GET", "/v1/status", headers: ["If-None-Match": tag])
            #expect(same.status == 304)
            #expect(same.body.isEmpty)
            // Weak comparison: the strong form of the same tag matches too, in a list as well.
            let strong = String(tag.dropFirst(2))
            #expect(try daemon.anonymous.send("GET", "/v1/status", headers: ["If-None-Match": strong]).status == 304)
            #expect(try daemon.anonymous.send("GET", "/v1/status", headers: ["If-None-Match": "\"other\", \(strong)"]).status == 304)
            #expect(try daemon.anonymous.send("GET", "/v1/status", headers: ["If-None-Match": "\"other\""]).status == 200)
            let lease = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            let changed = try daemon.anonymous.send("GET", "/v1/status", headers: ["If-None-Match": tag])
            #expect(changed.status == 200)
            #expect(changed.headers["etag"] != tag)
            // The full answer is rendered anew, not the one cached before the lease.
            func entry(_ response: TestHTTPClient.Response) -> [String: Any]? {
                (response.json["services"] as? [[String: Any]])?.first { $0["name"] as? String == name }
            }
            #expect(entry(changed)?["count"] as? Int == 1)
            #expect(entry(changed)?["leases"] as? Int == 1)
            #expect(entry(changed)?["state"] as? String == "ready")
            let id = try #require(lease.json["id"] as? String)
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
            #expect(entry(try daemon.anonymous.get("/v1/status"))?["count"] as? Int == 0)
            // A lingering service stops later, with no count changing, only its state: the
            // scrape shows it all the same (the cached answer is keyed on the published state).
            let lingering = daemon.uniqueName("linger")
            try daemon.defineSocketService(lingering, extra: ["linger_ms": 1_000])
            let held = try daemon.unix.send("POST", "/v1/services/\(lingering)/leases", json: ["ttl_ms": 60_000])
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(try #require(held.json["id"] as? String))").status == 200)
            func state(of service: String) throws -> String? {
                (try daemon.anonymous.get("/v1/status").json["services"] as? [[String: Any]])?
                    .first { $0["name"] as? String == service }?["state"] as? String
            }
            #expect(try state(of: lingering) == "ready")
            #expect(try eventually { try state(of: lingering) == "stopped" })
            let only = try daemon.anonymous.get("/v1/status?service=\(name)").json["services"] as? [[String: Any]]
            #expect(only?.count == 1)
            #expect(only?.first?["count"] as? Int == 0)
            #expect(try daemon.anonymous.get("/v1/status?service=nope").status == 404)
        }
    }
}
