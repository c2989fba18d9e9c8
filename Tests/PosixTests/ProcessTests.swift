import Foundation
import Glibc
import Posix
import Testing

@Suite("Processes")
struct ProcessTests {
    @Test("stat lines are parsed from the last parenthesis (names may hold spaces and parens)")
    func parseStat() {
        let line = "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615"
        let stat = ProcessStat.parse(line)
        #expect(stat?.state == "S")
        #expect(stat?.processGroup == 4242)
        #expect(stat?.startTime == 987_654)
        #expect(ProcessStat.parse("garbage") == nil)
        // The kernel ends the line with a newline; field 22 may be the last one before it.
        let fields = line.split(separator: " ")  // the name is 3 of these: field 22 is fields[23]
        #expect(ProcessStat.parse(fields.prefix(24).joined(separator: " ") + "\n")?.startTime == 987_654)
        #expect(ProcessStat.parse(fields.prefix(23).joined(separator: " ")) == nil)  // field 22 missing
        #expect(ProcessStat.parse(line.replacingOccurrences(of: " 987654 ", with: " 98x654 ")) == nil)
        #expect(ProcessStat.parse(line.replacingOccurrences(of: " 987654 ", with: " 99999999999999999999 ")) == nil)
    }

    @Test("identity tells a live process from a recycled pid")
    func identity() throws {
        let me = try #require(ProcessIdentity.of(pid: getpid()))
        #expect(me.isAlive)
        #expect(!ProcessIdentity(pid: me.pid, startTime: me.startTime + 1).isAlive)
    }

    @Test("spawn in a new group, signal through a pidfd, reap the exit status")
    func spawnSignalReap() throws {
        var options = Spawner.Options()
        options.newProcessGroup = true
        let identity = try Spawner().spawn(arguments: ["sleep", "30"], environment: ["PATH": "/usr/bin:/bin"], options: options)
        let process = try PidFD(identity: identity)
        defer { try? process.signal(SIGKILL); _ = process.waitForExit(timeoutMs: 1000) }
        #expect(ProcessStat.read(pid: identity.pid)?.processGroup == identity.pid)
        #expect(process.reap() == nil)
        try process.signal(SIGTERM)
        #expect(process.waitForExit(timeoutMs: 5000) == .signaled(signal: SIGTERM))
        #expect(!identity.isAlive)
    }

    @Test("spawn reports a missing program as ENOENT, with no child left")
    func missingProgram() {
        #expect(throws: SystemCallError.self) {
            _ = try Spawner().spawn(arguments: ["/nonexistent/program"], environment: [:], options: .init())
        }
    }

    @Test("the exit watcher reports each exit once, with its status")
    func exitWatcher() async throws {
        let watcher = try ExitWatcher()
        let identity = try Spawner().spawn(arguments: ["sh", "-c", "exit 7"], environment: ["PATH": "/usr/bin:/bin"], options: .init())
        let process = try? PidFD(identity: identity)
        guard let process else { return }  // exited before the pidfd was opened: nothing to watch
        let status = await withCheckedContinuation { continuation in
            try? watcher.watch(process) { continuation.resume(returning: $0) }
        }
        #expect(status == .exited(code: 7))
        #expect(watcher.watchedCount == 0)
    }
}
