import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// Services that run as their own user within limits: user and groups, umask, rlimits,
/// memory/CPU/process caps in cgroups (v2 or v1), OOM kills. Real processes, as root.
@Suite("Run as a user, within limits")
struct RunAsTests {
    /// A daemon whose API may define services running as `nobody`; the config file's dir is
    /// removed at the end.
    static func withNobodyDaemon(_ body: (DaemonHarness) throws -> Void) throws {
        let configDir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: configDir) }
        try "[security]\napi_users = [\"nobody\"]\n".write(toFile: "\(configDir)/procrefd.toml", atomically: true, encoding: .utf8)
        let daemon = try DaemonHarness(extraArguments: ["--config", "\(configDir)/procrefd.toml"])
        defer { daemon.shutdown() }
        try body(daemon)
    }

    static func define(_ daemon: DaemonHarness, _ name: String, _ body: [String: Any]) throws -> TestHTTPClient.Response {
        try daemon.unix.send("PUT", "/v1/services/\(name)", json: body)
    }

    /// The file of `pid`'s group for `controller`: in the v1 hierarchy that has it, else in v2.
    static func cgroupFile(pid: Int32, controller: String, v1: String, v2: String) -> String? {
        guard let membership = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8),
            let mountinfo = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        else { return nil }
        for line in membership.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[1].split(separator: ",").contains(Substring(controller)) else { continue }
            for entry in mountinfo.split(separator: "\n") where entry.contains(" - cgroup ") {
                let fields = entry.split(separator: " ")
                if fields.last?.split(separator: ",").contains(Substring(controller)) == true {
                    return "\(fields[4])\(parts[2])/\(v1)"
                }
            }
        }
        guard let v2Line = membership.split(separator: "\n").first(where: { $0.hasPrefix("0::") }),
            let mount = mountinfo.split(separator: "\n").first(where: { $0.contains(" - cgroup2 ") })?.split(separator: " ")[4]
        else { return nil }
        return "\(mount)\(v2Line.dropFirst(3))/\(v2)"
    }

    @Test("as nobody: uid and gid 65534, HOME and USER follow, umask and nofile applied, memory, pids and CPU caps written")
    func asNobody() throws {
        try Self.withNobodyDaemon { daemon in
            let name = daemon.uniqueName("nobody")
            // A directory nobody may write to, for the service's report.
            let shared = try makeTemporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: shared) }
            chmod(shared, 0o777)
            let report = "\(shared)/id"
            let defined = try Self.define(daemon, name, [
                "start": ["sh", "-c", "echo $(id -u) $(id -g) $USER $HOME > \(report).tmp; mv \(report).tmp \(report); exec sleep 60"],
                "user": "nobody", "umask": "027", "rlimits": ["nofile": 1234],
                "memory_max": "64M", "pids_max": 50, "cpu_max": 0.5,
            ])
            #expect(defined.status == 201, "\(defined.text)")
            let shown = try daemon.service(name)["definition"] as? [String: Any]
            #expect(shown?["user"] as? String == "nobody")
            #expect(shown?["memory_max"] as? Int == 64 << 20)
            let lease = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(lease.status == 201, "\(lease.text)")
            #expect(eventually { FileManager.default.fileExists(atPath: report) })
            let words = try String(contentsOfFile: report, encoding: .utf8).split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            let nobody = try #require(Accounts.user("nobody"))
            #expect(words == ["\(nobody.uid)", "\(nobody.gid)", "nobody", nobody.home])

            let pid = Int32(try #require(try daemon.service(name)["pid"] as? Int))
            let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
            #expect(limits.split(separator: "\n").contains { $0.hasPrefix("Max open files") && $0.split(separator: " ").filter { $0 == "1234" }.count == 2 })
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            #expect(status.contains("Umask:\t0027"))
            #expect(status.split(separator: "\n").contains { $0.hasPrefix("Uid:") && $0.split(separator: "\t").dropFirst().allSatisfy { $0 == "\(nobody.uid)" } })
            let memory = try #require(Self.cgroupFile(pid: pid, controller: "memory", v1: "memory.limit_in_bytes", v2: "memory.max"))
            #expect(try String(contentsOfFile: memory, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == "\(64 << 20)")
            let pids = try #require(Self.cgroupFile(pid: pid, controller: "pids", v1: "pids.max", v2: "pids.max"))
            #expect(try String(contentsOfFile: pids, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == "50")
            let cpu = try #require(Self.cgroupFile(pid: pid, controller: "cpu", v1: "cpu.cfs_quota_us", v2: "cpu.max"))
            #expect(try String(contentsOfFile: cpu, encoding: .utf8).hasPrefix("50000"))

            let summary = (try daemon.unix.get("/v1/status?service=\(name)").json["services"] as? [[String: Any]])?.first
            #expect(summary?["user"] as? String == "nobody")
            #expect((summary?["caps"] as? [String: Any])?["pids_max"] as? Int == 50)
        }
    }

    @Test("refusals: unknown user or group 422, a user outside api_users 403, a cwd the user cannot enter fails the start")
    func refusals() throws {
        try Self.withNobodyDaemon { daemon in
            let name = daemon.uniqueName("runas")
            let start = ["sleep", "60"]
            for (extra, status, field) in [
                (["user": "no-such-user-x"] as [String: Any], 422, "user"),
                (["group": "no-such-group-x"], 422, "group"),
                (["umask": "999"], 422, "umask"),
                (["rlimits": ["nofiles": 10]], 422, "rlimits.nofiles"),
                (["memory_max": "12Q"], 422, "memory_max"),
                (["user": "root"], 403, "user root"),
                (["user": "nobody", "group": "root"], 403, "group root"),
                (["group": "nogroup"], 403, "group nogroup"),
            ] {
                let response = try Self.define(daemon, name, ["start": start].merging(extra) { $1 })
                #expect(response.status == status, "\(extra): \(response.text)")
                #expect((response.json["detail"] as? String)?.hasPrefix(field) == true, "\(extra): \(response.text)")
            }
            #expect(try daemon.unix.get("/v1/services/\(name)").status == 404)

            // /root is 0700: nobody cannot enter it, and the start says so.
            #expect(try Self.define(daemon, name, ["start": start, "user": "nobody", "cwd": "/root"]).status == 201)
            let refused = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(refused.status == 503, "\(refused.text)")
            #expect((refused.json["detail"] as? String)?.contains("chdir(/root) as the service's user") == true, "\(refused.text)")
            #expect(try daemon.kernelCount(name) == 0)
        }
    }

    @Test("past memory_max the kernel kills it: service.exited says oom_kill, and it is restarted like any crash")
    func oomKill() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("oom")
            let defined = try Self.define(daemon, name, [
                "start": ["python3", "-c", "import time\nblock = bytearray(256 << 20)\ntime.sleep(60)"],
                "memory_max": "48M", "restart_backoff_ms": 50, "restart_limit": 5,
            ])
            #expect(defined.status == 201, "\(defined.text)")
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
            #expect(eventually(timeout: 20) { ((try? daemon.eventKinds(service: name)) ?? []).filter { $0 == "service.restarting" }.count >= 1 })
            let exited = try daemon.events(service: name).first { $0["kind"] as? String == "service.exited" }
            let detail = exited?["detail"] as? [String: Any]
            #expect(detail?["reason"] as? String == "oom_kill", "\(String(describing: exited))")
            #expect(detail?["exit"] as? String == "signal SIGKILL")
        }
    }

    @Test("pids_max stops a fork bomb: forks fail at the cap, and the service's group never holds more")
    func forkBomb() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("forks")
            let report = "\(daemon.stateDir)/\(name).forks"
            let script = """
                import os, time
                forked = 0
                for _ in range(200):
                    try:
                        pid = os.fork()
                    except OSError:
                        break
                    if pid == 0:
                        time.sleep(60)
                        os._exit(0)
                    forked += 1
                open("\(report).tmp", "w").write(str(forked))
                os.rename("\(report).tmp", "\(report)")
                time.sleep(60)
                """
            #expect(try Self.define(daemon, name, ["start": ["python3", "-c", script], "pids_max": 10]).status == 201)
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
            #expect(eventually(timeout: 20) { FileManager.default.fileExists(atPath: report) })
            let forked = Int(try String(contentsOfFile: report, encoding: .utf8)) ?? -1
            #expect((0..<10).contains(forked), "forked \(forked) children under pids_max 10")
            let pid = Int32(try #require(try daemon.service(name)["pid"] as? Int))
            let current = try #require(Self.cgroupFile(pid: pid, controller: "pids", v1: "pids.current", v2: "pids.current"))
            #expect((Int(try String(contentsOfFile: current, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 99) <= 10)
        }
    }
}
