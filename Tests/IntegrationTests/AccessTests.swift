import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// Real users of the host, made for the test (`useradd`) and removed after it: what each
/// may do under `[access]`, as the kernel names them on the Unix socket.
@Suite("Access by user")
struct AccessTests {
    /// Users and a group made for one test; removed by `remove()`.
    final class TestAccounts: @unchecked Sendable {
        let suffix = String(UUID().uuidString.prefix(6).lowercased())
        var users: [String] = []
        var group: String { "prg-\(suffix)" }

        init() throws {
            try run("/usr/sbin/groupadd", ["--system", group])
        }

        /// A new system user, in the test's group when `inGroup`.
        func add(_ role: String, inGroup: Bool = false) throws -> (name: String, uid: uid_t, gid: gid_t) {
            let name = "pr\(role.prefix(3))-\(suffix)"
            try run("/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin"] + (inGroup ? ["-G", group] : []) + [name])
            users.append(name)
            let account = try #require(Accounts.user(name))
            return (name, account.uid, account.gid)
        }

        func remove() {
            for user in users { _ = try? run("/usr/sbin/userdel", [user]) }
            _ = try? run("/usr/sbin/groupdel", [group])
        }

        func run(_ program: String, _ arguments: [String]) throws {
            let result = try runProgram(program, arguments)
            guard result.code == 0 else { throw TestHTTPClient.Failure(description: "\(program) \(arguments): \(result.code) \(result.stderr)") }
        }
    }

    /// One request over the Unix socket as `user` (setpriv drops to its uid, gid and groups;
    /// curl speaks HTTP): status and body.
    func request(as user: (name: String, uid: uid_t, gid: gid_t), _ socket: String, _ method: String, _ path: String, _ body: String? = nil)
        throws -> (status: Int, json: [String: Any])
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        var arguments = ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "/usr/bin/curl", "-s", "-w", "\n%{http_code}",
                         "--unix-socket", socket, "-X", method]
        if let body { arguments += ["-H", "Content-Type: application/json", "-d", body] }
        process.arguments = arguments + ["http://localhost\(path)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? 0
        let json = (try? JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8))) as? [String: Any] ?? [:]
        return (status, json)
    }

    @Test("a leaser leases an allowed service and not another; cannot end another user's lease; a reader reads; an operator ends any lease; the log names each")
    func roles() throws {
        let accounts = try TestAccounts()
        defer { accounts.remove() }
        let leaser = try accounts.add("lsr", inGroup: true)
        let other = try accounts.add("oth", inGroup: true)
        let reader = try accounts.add("rdr")
        let operatorUser = try accounts.add("opr")
        let stranger = try accounts.add("str")
        let allowed = "acc-\(accounts.suffix)", forbidden = "acf-\(accounts.suffix)"
        let config = """
            socket_mode = "0666"
            [access]
            operators = ["\(operatorUser.name)"]
            readers = ["\(reader.name)"]
            [services.\(allowed)]
            slots = 10
            lease = ["group:\(accounts.group)"]
            [services.\(forbidden)]
            slots = 10
            """
        try withDaemon(config: config) { daemon throws in
            daemon.adoptServiceName(allowed)
            daemon.adoptServiceName(forbidden)
            // Others reach the socket through the state dir only when it lets them pass.
            #expect(chmod(daemon.stateDir, 0o711) == 0)
            let socket = "\(daemon.stateDir)/procrefd.sock"

            let who = try request(as: leaser, socket, "GET", "/v1/whoami")
            #expect(who.status == 200 && who.json["uid"] as? Int == Int(leaser.uid) && who.json["user"] as? String == leaser.name)
            #expect(who.json["role"] is NSNull, "\(who.json)")
            #expect(try request(as: operatorUser, socket, "GET", "/v1/whoami").json["role"] as? String == "operator")

            let granted = try request(as: leaser, socket, "POST", "/v1/services/\(allowed)/leases", #"{"ttl_ms":60000}"#)
            #expect(granted.status == 201, "\(granted)")
            let id = try #require(granted.json["id"] as? String)
            #expect(granted.json["owner_uid"] as? Int == Int(leaser.uid))
            let refused = try request(as: leaser, socket, "POST", "/v1/services/\(forbidden)/leases", #"{"ttl_ms":60000}"#)
            #expect(refused.status == 403 && (refused.json["detail"] as? String)?.contains(forbidden) == true, "\(refused)")
            #expect(try daemon.kernelCount(forbidden) == 0)
            // Another user of the same group may lease the service, but not end this lease.
            #expect(try request(as: other, socket, "DELETE", "/v1/leases/\(id)").status == 403)
            #expect(try request(as: other, socket, "POST", "/v1/leases/\(id)/keepalive").status == 403)
            #expect(try request(as: other, socket, "GET", "/v1/leases/\(id)").status == 404)
            #expect((try request(as: other, socket, "GET", "/v1/leases").json["leases"] as? [Any])?.isEmpty == true)
            #expect(try daemon.kernelCount(allowed) == 1)
            // A client_pid of another user's process (pid 1, root's) is refused.
            let foreignClient = try request(as: other, socket, "POST", "/v1/services/\(allowed)/leases", #"{"client_pid":1}"#)
            #expect(foreignClient.status == 403 && (foreignClient.json["detail"] as? String)?.contains("client_pid 1") == true, "\(foreignClient)")
            // A reader reads status and services, and leases nothing; a stranger only status.
            #expect(try request(as: reader, socket, "GET", "/v1/services").status == 200)
            #expect(try request(as: reader, socket, "POST", "/v1/services/\(allowed)/leases", #"{"ttl_ms":60000}"#).status == 403)
            #expect(try request(as: reader, socket, "GET", "/v1/events").status == 403)
            #expect(try request(as: stranger, socket, "GET", "/v1/services").status == 403)
            #expect(try request(as: stranger, socket, "PUT", "/v1/services/x-\(accounts.suffix)", #"{"start":["true"]}"#).status == 403)
            #expect(try daemon.kernelCount(allowed) == 1)
            // The owner ends it; so may an operator, any lease.
            let second = try #require(try request(as: other, socket, "POST", "/v1/services/\(allowed)/leases", #"{"ttl_ms":60000}"#).json["id"] as? String)
            #expect(try request(as: leaser, socket, "DELETE", "/v1/leases/\(id)").status == 200)
            #expect(try request(as: operatorUser, socket, "DELETE", "/v1/leases/\(second)").status == 200)
            #expect(try daemon.kernelCount(allowed) == 0)

            // The audit log names who did each, from the kernel.
            let events = try daemon.events()
            let acquired = events.filter { $0["kind"] as? String == "lease.acquired" && $0["lease"] as? String == id }
            let by = acquired.first?["by"] as? [String: Any]
            #expect(by?["uid"] as? Int == Int(leaser.uid) && by?["user"] as? String == leaser.name && by?["comm"] as? String == "curl", "\(String(describing: by))")
            #expect((by?["pid"] as? Int ?? 0) > 0)
            let endedByOperator = events.first { $0["kind"] as? String == "lease.released" && $0["lease"] as? String == second }
            #expect((endedByOperator?["by"] as? [String: Any])?["uid"] as? Int == Int(operatorUser.uid))
            #expect((endedByOperator?["detail"] as? [String: Any])?["ended_by"] as? String == "other")
            let endedByOwner = events.first { $0["kind"] as? String == "lease.released" && $0["lease"] as? String == id }
            #expect((endedByOwner?["detail"] as? [String: Any])?["ended_by"] as? String == "owner")
            let denied = events.filter { $0["kind"] as? String == "access.denied" }
            #expect(denied.contains { ($0["by"] as? [String: Any])?["uid"] as? Int == Int(leaser.uid) && $0["service"] as? String == forbidden })
            #expect(denied.contains { ($0["by"] as? [String: Any])?["uid"] as? Int == Int(stranger.uid) })
        }
    }

    @Test("max_leases_per_user: one user cannot take every slot (429 user-limit); leases are counted by owner in procrefd_leases_by_user")
    func perUserLimit() throws {
        let accounts = try TestAccounts()
        defer { accounts.remove() }
        let first = try accounts.add("one", inGroup: true)
        let second = try accounts.add("two", inGroup: true)
        let name = "lim-\(accounts.suffix)"
        let config = "socket_mode = \"0666\"\n[limits]\nmax_leases_per_user = 2\n[access]\n[services.\(name)]\nslots = 10\nlease = [\"group:\(accounts.group)\"]\n"
        try withDaemon(config: config) { daemon throws in
            daemon.adoptServiceName(name)
            #expect(chmod(daemon.stateDir, 0o711) == 0)
            let socket = "\(daemon.stateDir)/procrefd.sock"
            for _ in 0..<2 { #expect(try request(as: first, socket, "POST", "/v1/services/\(name)/leases", #"{"ttl_ms":60000}"#).status == 201) }
            let third = try request(as: first, socket, "POST", "/v1/services/\(name)/leases", #"{"ttl_ms":60000}"#)
            #expect(third.status == 429 && third.json["type"] as? String == "urn:procrefd:problem:user-limit", "\(third)")
            #expect(try request(as: second, socket, "POST", "/v1/services/\(name)/leases", #"{"ttl_ms":60000}"#).status == 201)
            #expect(try daemon.kernelCount(name) == 3)
            let metrics = try daemon.unix.get("/metrics").text
            #expect(metrics.contains("procrefd_leases_by_user{user=\"\(first.name)\"} 2"), "\(metrics)")
            #expect(metrics.contains("procrefd_leases_by_user{user=\"\(second.name)\"} 1"))
            #expect(metrics.contains("procrefd_leases_by_user{user=\"other\"} 0"))
        }
    }

    @Test("socket_path puts the socket outside the 0700 state dir, where other users reach it; the CLI finds it by --socket or $PROCREFD_SOCKET")
    func socketPath() throws {
        let accounts = try TestAccounts()
        defer { accounts.remove() }
        let reader = try accounts.add("rsp")
        let run = "/tmp/prd-run-\(accounts.suffix)"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(atPath: run) }
        let socket = "\(run)/procrefd/procrefd.sock"
        let config = "socket_mode = \"0666\"\nsocket_path = \"\(socket)\"\n[access]\nreaders = [\"\(reader.name)\"]\n"
        try withDaemon(config: config) { daemon throws in
            #expect(Files.kind(socket)?.isSocket == true && Files.kind("\(daemon.stateDir)/procrefd.sock") == nil)
            #expect(Files.kind(daemon.stateDir)?.mode == 0o700)
            let who = try request(as: reader, socket, "GET", "/v1/whoami")
            #expect(who.status == 200 && who.json["role"] as? String == "reader", "\(who)")
            let cli = try runProcrefd(["whoami", "--socket", socket])
            #expect(cli.code == 0 && cli.stdout.contains("role: admin"), "\(cli.stdout) \(cli.stderr)")
            let status = try runProgram("/usr/bin/env", ["PROCREFD_SOCKET=\(socket)", "\(binDirectory)/procrefd", "status", "--state-dir", daemon.stateDir])
            #expect(status.code == 0, "\(status.stdout) \(status.stderr)")
        }
        #expect(Files.kind(socket) == nil)  // removed at stop
    }

    @Test("SIGHUP reloads [access]: a reader taken off the list is refused from the next request")
    func reload() throws {
        let accounts = try TestAccounts()
        defer { accounts.remove() }
        let reader = try accounts.add("rld")
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/procrefd.toml"
        try "socket_mode = \"0666\"\n[access]\nreaders = [\"\(reader.name)\"]\n".write(toFile: path, atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(extraArguments: ["--config", path])
        defer { daemon.shutdown() }
        #expect(chmod(daemon.stateDir, 0o711) == 0)
        let socket = "\(daemon.stateDir)/procrefd.sock"
        #expect(try request(as: reader, socket, "GET", "/v1/services").status == 200)
        try "socket_mode = \"0666\"\n[access]\nreaders = []\n".write(toFile: path, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(eventually { (try? daemon.events().contains { $0["kind"] as? String == "daemon.config_reloaded" }) == true })
        #expect(try request(as: reader, socket, "GET", "/v1/services").status == 403)
        #expect(try request(as: reader, socket, "GET", "/v1/whoami").json["role"] is NSNull)
    }

    @Test("[access] is checked: socket_mode 0666 without it, or an unknown user or group, is a config error")
    func configChecks() throws {
        for (text, named) in [
            ("socket_mode = \"0666\"\n", "socket_mode"),
            ("[access]\nreaders = [\"no-such-user-x\"]\n", "access.readers"),
            ("[access]\nadmins = [\"group:no-such-group-x\"]\n", "access.admins"),
            ("[services.x]\nslots = 1\nlease = [\"no-such-user-x\"]\n", "lease"),
        ] {
            let dir = try makeTemporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try text.write(toFile: "\(dir)/c.toml", atomically: true, encoding: .utf8)
            let run = try runProcrefd(["serve", "--state-dir", dir, "--port", "0", "--config", "\(dir)/c.toml"], timeout: 30)
            #expect(run.code == 1 && run.stderr.contains(named), "\(text): \(run.stderr)")
        }
    }
}

/// Named tokens: made and revoked by the admin, each its own principal in the log.
@Suite("Named tokens")
struct NamedTokenTests {
    @Test("two token principals are told apart in the log; a leaser token leases only its services; a revoked token gets 401 at once; no secret is stored")
    func tokens() throws {
        try withDaemon { daemon in
            let mine = daemon.uniqueName("tok"), other = daemon.uniqueName("tokx")
            try daemon.defineSocketService(mine)
            try daemon.defineSocketService(other)
            let dir = ["--state-dir", daemon.stateDir]
            let made = try runProcrefd(["token", "create", "ci", "--role", "leaser", "--service", mine] + dir)
            #expect(made.code == 0, "\(made.stderr)")
            let ciSecret = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(ciSecret.count == 64)
            let opsSecret = try runProcrefd(["token", "create", "ops", "--role", "operator"] + dir).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try runProcrefd(["token", "create", "ci", "--role", "reader"] + dir).code == 5)  // names are not reused
            let ci = TestHTTPClient(endpoint: .tcp(port: daemon.port), token: ciSecret)
            let ops = TestHTTPClient(endpoint: .tcp(port: daemon.port), token: opsSecret)

            let grant = try ci.send("POST", "/v1/services/\(mine)/leases", json: ["ttl_ms": 60_000])
            #expect(grant.status == 201, "\(grant.text)")
            let id = try #require(grant.json["id"] as? String)
            #expect(grant.json["owner"] as? String == "token:ci")
            #expect(try ci.send("POST", "/v1/services/\(other)/leases", json: ["ttl_ms": 60_000]).status == 403)
            #expect(try ci.get("/v1/events").status == 403)
            #expect(try ci.send("POST", "/v1/services/\(mine)/restart").status == 403)
            #expect(try ops.send("DELETE", "/v1/leases/\(id)").status == 200)
            #expect(try daemon.kernelCount(mine) == 0 && daemon.kernelCount(other) == 0)

            let events = try daemon.events(service: mine)
            #expect(events.first { $0["kind"] as? String == "lease.acquired" }?["actor"] as? String == "token:ci")
            let released = events.first { $0["kind"] as? String == "lease.released" }
            #expect(released?["actor"] as? String == "token:ops")
            #expect((released?["detail"] as? [String: Any])?["ended_by"] as? String == "other")

            #expect(try runProcrefd(["token", "revoke", "ci"] + dir).code == 0)
            #expect(try ci.send("POST", "/v1/services/\(mine)/leases", json: ["ttl_ms": 60_000]).status == 401)
            let listed = try runProcrefd(["token", "list"] + dir).stdout
            #expect(listed.contains("ci") && listed.contains("ops") && !listed.contains(ciSecret), "\(listed)")
            let kinds = try daemon.events().compactMap { $0["kind"] as? String }
            #expect(kinds.filter { $0 == "token.created" }.count == 2 && kinds.contains("token.revoked"))
            // Only the hash is kept: neither secret is anywhere in the database.
            let database = try Data(contentsOf: URL(fileURLWithPath: "\(daemon.stateDir)/procrefd.db"))
                + ((try? Data(contentsOf: URL(fileURLWithPath: "\(daemon.stateDir)/procrefd.db-wal"))) ?? Data())
            #expect(database.range(of: Data(ciSecret.utf8)) == nil && database.range(of: Data(opsSecret.utf8)) == nil)
        }
    }
}

/// The client of a client-bound lease is opened once, by procrefd, as a pidfd, and that
/// pidfd is what the holder watches: the pid cannot pass to another process in between.
@Suite("Client pidfd handoff")
struct ClientHandoffTests {
    @Test("the holder holds a pidfd of the client, and the lease ends when that client exits")
    func handoff() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("hand")
            try daemon.defineSocketService(name)
            let client = try daemon.startSleeper()
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["client_pid": Int(client.processIdentifier)])
            #expect(grant.status == 201, "\(grant.text)")
            let holder = try #require(grant.json["holder_pid"] as? Int)
            // A pidfd's fdinfo names the pid it refers to.
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(holder)/fdinfo")) ?? []
            let watched = fds.compactMap { try? String(contentsOfFile: "/proc/\(holder)/fdinfo/\($0)", encoding: .utf8) }
                .contains { $0.contains("Pid:\t\(client.processIdentifier)\n") }
            #expect(watched, "no pidfd of \(client.processIdentifier) in holder \(holder)")
            kill(client.processIdentifier, SIGKILL)
            client.waitUntilExit()
            #expect(eventually { (try? daemon.eventKinds(service: name).contains("lease.client_exited")) == true })
            #expect(try daemon.kernelCount(name) == 0)
        }
    }
}
