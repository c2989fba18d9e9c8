import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// Service logs are bounded: rotated by renaming past `log_max_bytes`, `log_keep` kept, by a
/// pump that outlives procrefd; a follow goes on across a rotation.
@Suite("Log rotation")
struct LogRotationTests {
    /// Prints `count` numbered lines, one every `pauseMs`, then sleeps.
    func writer(count: Int, pauseMs: Int) -> [String] {
        ["python3", "-c", "import sys,time\nfor i in range(\(count)):\n    print('line %06d' % i, flush=True)\n    time.sleep(\(Double(pauseMs) / 1000))\ntime.sleep(600)"]
    }

    func numbers(_ text: String) -> [Int] {
        text.split(separator: "\n").compactMap { $0.hasPrefix("line ") ? Int($0.dropFirst(5)) : nil }
    }

    @Test("past log_max_bytes the log is renamed to .1, .2 …; log_keep are kept; every file ends on a whole line and nothing is lost between them")
    func rotation() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("rot")
            let defined = try daemon.unix.send("PUT", "/v1/services/\(name)", json: [
                "start": writer(count: 1_500, pauseMs: 2), "log_max_bytes": 4_096, "log_keep": 2, "stop_timeout_ms": 2_000,
            ])
            #expect(defined.status == 201, "\(defined.text)")
            // Followed from before the first start: the file does not exist yet.
            let follower = try BackgroundProcrefd(["logs", name, "-f", "-n", "0", "--state-dir", daemon.stateDir])
            defer { follower.stop() }
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(grant.status == 201)
            let log = "\(daemon.stateDir)/logs/\(name).log"
            #expect(eventually(timeout: 20) { numbers(follower.output()).last == 1_499 }, "\(numbers(follower.output()).suffix(3))")
            // The follow saw every line once, in order, across every rotation.
            #expect(numbers(follower.output()) == Array(0..<1_500))
            let files = [log + ".2", log + ".1", log]
            #expect(Files.kind(log + ".3") == nil)
            var kept: [Int] = []
            for file in files {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                #expect(text.utf8.count <= 4_096 && text.hasSuffix("\n"), "\(file): \(text.utf8.count) bytes")
                kept += numbers(text)
            }
            // The kept files hold the newest lines, contiguous.
            #expect(kept.last == 1_499)
            #expect(kept == Array((1_500 - kept.count)..<1_500), "\(kept.prefix(3)) … \(kept.suffix(3))")
            #expect(kept.count > 300)
            // The pump ends with the service's output.
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(grant.json["id"] as? String ?? "")").status == 200)
            #expect(eventually(timeout: 10) { pidsMentioning(log).isEmpty }, "\(pidsMentioning(log))")
        }
    }

    @Test("[logs] sets the daemon's defaults; a bad log_max_bytes or log_keep is 422")
    func defaults() throws {
        try withDaemon(config: "[logs]\nmax_bytes = 8192\nkeep = 1\n") { daemon throws in
            let name = daemon.uniqueName("rotd")
            #expect(try daemon.unix.send("PUT", "/v1/services/\(name)", json: ["start": writer(count: 1_000, pauseMs: 0)]).status == 201)
            #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
            let log = "\(daemon.stateDir)/logs/\(name).log"
            #expect(eventually(timeout: 20) { (try? String(contentsOfFile: log, encoding: .utf8)).map { numbers($0).last == 999 } ?? false })
            #expect(Files.kind(log + ".1") != nil && Files.kind(log + ".2") == nil)
            #expect(Files.size(log) <= 8_192 && Files.size(log + ".1") <= 8_192)
            for (key, value) in [("log_max_bytes", 100), ("log_max_bytes", -1), ("log_keep", 101)] {
                let refused = try daemon.unix.send("PUT", "/v1/services/\(name)-bad", json: ["start": ["true"], key: value])
                #expect(refused.status == 422 && refused.text.contains(key), "\(key)=\(value): \(refused.text)")
            }
        }
    }
}
