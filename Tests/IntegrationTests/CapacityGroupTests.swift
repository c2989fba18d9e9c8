import Foundation
import Glibc
import ProcrefdClient
import Testing

/// Capacity groups with real services: only what fits runs; a full group evicts idle
/// members least recently used first, queues starts first in first out, and refuses naming
/// the holders.
@Suite("Capacity groups")
struct CapacityGroupTests {
    static let config = "[groups.g]\ncapacity = 2\n"

    /// Members of `g` (cost 1 each), listening on Unix sockets in the state dir.
    func members(_ daemon: DaemonHarness, _ prefixes: [String], linger: Int = 0) throws -> [String] {
        try prefixes.map { prefix in
            let name = daemon.uniqueName(prefix)
            try daemon.defineSocketService(name, extra: ["capacity_group": "g", "linger_ms": linger])
            return name
        }
    }

    func lease(_ daemon: DaemonHarness, _ name: String, holder: String = "t", waitMs: Int = 0) throws -> TestHTTPClient.Response {
        try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000, "holder": holder, "wait_ms": waitMs])
    }

    func group(_ daemon: DaemonHarness) throws -> [String: Any] {
        try #require((try daemon.unix.get("/v1/groups").json["groups"] as? [[String: Any]])?.first { $0["name"] as? String == "g" })
    }

    @Test("a start that does not fit, with nothing idle and no wait, is refused 429 group-full naming the running members and their holders")
    func refusedNamingHolders() throws {
        try withDaemon(config: Self.config) { daemon in
            let names = try members(daemon, ["a", "b", "c"])
            #expect(try lease(daemon, names[0], holder: "alice-job").status == 201)
            #expect(try lease(daemon, names[1], holder: "bob-job").status == 201)
            let refused = try lease(daemon, names[2])
            #expect(refused.status == 429)
            #expect(refused.json["type"] as? String == "urn:procrefd:problem:group-full")
            let detail = refused.json["detail"] as? String ?? ""
            #expect(detail.contains(names[0]) && detail.contains("alice-job") && detail.contains(names[1]) && detail.contains("bob-job"), "\(detail)")
            #expect(try daemon.service(names[2])["state"] as? String == "stopped")
            #expect(try daemon.kernelCount(names[2]) == 0)
            let g = try group(daemon)
            #expect(g["capacity"] as? Int == 2)
            #expect(g["in_use"] as? Int == 2)
            #expect(g["running"] as? [String] == [names[0], names[1]].sorted())
        }
    }

    @Test("a start evicts the idle member that has been idle longest, and only as many as it needs; a member still leased is never evicted")
    func evictsLeastRecentlyUsed() throws {
        try withDaemon(config: Self.config) { daemon in
            let names = try members(daemon, ["a", "b", "c"], linger: 60_000)
            let (a, b, c) = (names[0], names[1], names[2])
            for name in [a, b] {
                let id = try #require(try lease(daemon, name).json["id"] as? String)
                #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
                #expect(eventually { (try? daemon.service(name)["linger_until"] as? String) != nil })
            }
            #expect(try lease(daemon, c).status == 201)
            #expect(try daemon.service(a)["state"] as? String == "stopped")
            #expect(try daemon.service(b)["state"] as? String == "ready")
            let evicted = try daemon.events(service: a).last { $0["kind"] as? String == "service.evicted" }
            #expect((evicted?["detail"] as? [String: Any])?["for"] as? String == c)
            #expect(try daemon.events(service: b).allSatisfy { $0["kind"] as? String != "service.evicted" })
            #expect(try group(daemon)["in_use"] as? Int == 2)
            // b lingers, c is leased: a needs room, and only b may go.
            #expect(try lease(daemon, a).status == 201)
            #expect(try daemon.service(b)["state"] as? String == "stopped")
            #expect(try daemon.service(c)["state"] as? String == "ready")
        }
    }

    @Test("a frozen member is evicted before a lingering one, even one idle longer")
    func frozenFirst() throws {
        try withDaemon(config: Self.config) { daemon in
            let (lingering, frozen, starting) = (daemon.uniqueName("b"), daemon.uniqueName("a"), daemon.uniqueName("c"))
            try daemon.defineSocketService(lingering, extra: ["capacity_group": "g", "linger_ms": 60_000])
            try daemon.defineSocketService(frozen, extra: ["capacity_group": "g", "idle": "freeze"])
            for (name, idle) in [(lingering, "ready"), (frozen, "frozen")] {
                let id = try #require(try lease(daemon, name).json["id"] as? String)
                #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
                #expect(eventually { (try? daemon.service(name)["state"] as? String) == idle })
            }
            try daemon.defineSocketService(starting, extra: ["capacity_group": "g"])
            #expect(try lease(daemon, starting).status == 201)
            #expect(try daemon.service(frozen)["state"] as? String == "stopped")
            #expect(try daemon.service(lingering)["state"] as? String == "ready")
        }
    }

    @Test("starts that wait queue first in first out, and are served as leases end")
    func queueInOrder() throws {
        try withDaemon(config: Self.config) { daemon in
            let names = try members(daemon, ["a", "b", "c", "d"])
            let held = try [names[0], names[1]].map { try #require(try lease(daemon, $0).json["id"] as? String) }
            let answers = Answers()
            for (index, name) in [names[2], names[3]].enumerated() {
                DispatchQueue.global().async {
                    let status = (try? lease(daemon, name, waitMs: 20_000).status) ?? 0
                    answers.add(index, status)
                }
                let expected = Array([names[2], names[3]].prefix(index + 1))
                #expect(eventually { ((try? group(daemon)["queued"] as? [String]) ?? []) == expected })
            }
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(held[0])").status == 200)
            #expect(eventually { answers.statuses[0] == 201 })
            #expect(answers.statuses[1] == nil)  // still waiting: the group is full again
            #expect(try group(daemon)["queued"] as? [String] == [names[3]])
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(held[1])").status == 200)
            #expect(eventually { answers.statuses[1] == 201 })
            #expect(try group(daemon)["queued"] as? [String] == [])
        }
    }

    @Test("a group that is not in the config file, or a cost above its capacity, is a 422")
    func badMembers() throws {
        try withDaemon(config: Self.config) { daemon in
            let name = daemon.uniqueName("x")
            for (fields, field) in [(["capacity_group": "nowhere"], "capacity_group"), (["capacity_group": "g", "cost": 3], "cost"), (["cost": 1], "cost")] as [([String: Any], String)] {
                let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: (["start": ["sleep", "30"]] as [String: Any]).merging(fields) { $1 })
                #expect(response.status == 422, "\(fields)")
                #expect(response.text.contains(field), "\(response.text)")
            }
        }
    }
}

/// Answers of acquires made on other threads, by index.
final class Answers: @unchecked Sendable {
    private let lock = NSLock()
    private var answers: [Int: Int] = [:]
    func add(_ index: Int, _ status: Int) { lock.withLock { answers[index] = status } }
    var statuses: [Int: Int] { lock.withLock { answers } }
}
