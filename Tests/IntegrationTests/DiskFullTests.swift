import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// A full disk: lease ends and service transitions are never lost, new leases are refused
/// while records wait, and everything is committed, in order, once there is room again.
@Suite("Disk full")
struct DiskFullTests {
    /// Writes zeros to `path` until the filesystem is full; returns the bytes written.
    @discardableResult
    func fill(_ path: String) -> Int {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0, count: 16 << 10)
        var written = 0
        while true {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return written }
            written += n
        }
    }

    func status(_ daemon: DaemonHarness) throws -> [String: Any] { try daemon.unix.get("/v1/status").json }

    @Test("on a full tmpfs: ends wait in memory, acquires get 503 audit-unavailable, and every end is committed in order once space is freed")
    func diskFull() throws {
        let base = try makeTemporaryDirectory()
        let state = "\(base)/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let mount = try runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", state])
        try #require(mount.code == 0, "mount tmpfs: \(mount.stderr)")
        defer {
            _ = try? runProgram("/bin/umount", ["-l", state])
            try? FileManager.default.removeItem(atPath: base)
        }
        let daemon = try DaemonHarness(stateDir: state)
        let name = "full-\(UUID().uuidString.prefix(8).lowercased())"
        daemon.adoptServiceName(name)
        let set = LateSemaphoreSet()
        defer {
            daemon.shutdown()
            try? set.value?.remove()
        }
        #expect(try daemon.unix.send("PUT", "/v1/services/\(name)", json: ["slots": 500]).status == 201)
        set.value = daemon.semaphoreSet(name)
        #expect(Files.kind("\(state)/ballast")?.isRegular == true)

        func acquire() throws -> TestHTTPClient.Response {
            try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 600_000])
        }
        var live: [String] = []
        for _ in 0..<20 { live.append(try #require(try acquire().json["id"] as? String)) }
        fill("\(state)/filler-1")

        // Lease cycles until the audit log is degraded: the ballast is freed at the first
        // failure (then filled too), and the WAL's reused room runs out.
        var ended: [String] = []
        var refused503 = false
        var degraded = false
        var refills = 1
        for _ in 0..<3_000 where !degraded {
            if Files.kind("\(state)/ballast") == nil, refills < 3 {
                refills += 1
                fill("\(state)/filler-\(refills)")
            }
            let grant = try acquire()
            if grant.status == 201, let id = grant.json["id"] as? String { live.append(id) }
            if grant.status == 503, grant.json["type"] as? String == "urn:procrefd:problem:audit-unavailable" { refused503 = true }
            let id = live.removeFirst()
            let release = try daemon.unix.send("DELETE", "/v1/leases/\(id)")
            #expect(release.status == 200, "\(release.text)")
            ended.append(id)
            degraded = try status(daemon)["audit"] as? String == "degraded"
        }
        try #require(degraded, "the audit log never became degraded")
        #expect((try status(daemon)["audit_waiting"] as? Int ?? 0) > 0)
        let refused = try acquire()
        #expect(refused.status == 503, "\(refused.text)")
        #expect(refused.json["type"] as? String == "urn:procrefd:problem:audit-unavailable")
        #expect(refused.headers["retry-after"] != nil)
        _ = refused503
        // The rest end while degraded too: the kernel count follows at once.
        for id in live {
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
            ended.append(id)
        }
        #expect(try daemon.kernelCount(name) == 0)
        let metrics = try daemon.unix.get("/metrics").text
        #expect(metrics.contains("procrefd_audit_waiting_records "), "\(metrics.prefix(200))")

        // Room again: everything waiting is committed within a few seconds.
        for index in 1...refills { try? FileManager.default.removeItem(atPath: "\(state)/filler-\(index)") }
        #expect(eventually(timeout: 20) { (try? status(daemon)["audit"] as? String) == "ok" })
        #expect(try acquire().status == 201)

        let events = try daemon.unix.get("/v1/events?service=\(name)&kind=lease.released&limit=1000&order=asc").json["events"] as? [[String: Any]] ?? []
        let recorded = events.compactMap { $0["lease"] as? String }
        #expect(recorded == ended, "\(recorded.count) recorded, \(ended.count) ended")
        let kinds = try daemon.events().compactMap { $0["kind"] as? String }
        #expect(kinds.contains("audit.storage_full") && kinds.contains("audit.storage_recovered"))
        let check = try runProgram("/usr/bin/sqlite3", ["\(state)/procrefd.db", "PRAGMA integrity_check;"])
        #expect(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ok", "\(check.stdout) \(check.stderr)")
    }
}

/// A value set once a test knows it, for its cleanup.
private final class LateSemaphoreSet: @unchecked Sendable {
    var value: SemaphoreSet?
}
