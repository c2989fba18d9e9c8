import Foundation
import Glibc
import Posix
import Synchronization
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

    @Test("the I/O loop reports an exit once, with its status")
    func exitWatch() async throws {
        let loop = try IOLoop(name: "test-io")
        let identity = try Spawner().spawn(arguments: ["sh", "-c", "exit 7"], environment: ["PATH": "/usr/bin:/bin"], options: .init())
        let process = try PidFD(child: identity)  // our unreaped child: valid even if it already exited
        let status = await withCheckedContinuation { continuation in
            do { try loop.watchExit(of: process) { continuation.resume(returning: $0) } } catch {
                continuation.resume(returning: nil)
            }
        }
        #expect(status == .exited(code: 7))
    }

    @Test("I/O loop timers fire in deadline order; a cancelled one never fires")
    func timers() async throws {
        let loop = try IOLoop(name: "test-io")
        let fired = Mutex<[Int]>([])
        let cancelled = loop.schedule(afterMs: 5) { fired.withLock { $0.append(0) } }
        #expect(loop.cancel(cancelled))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            loop.schedule(afterMs: 30) {
                fired.withLock { $0.append(2) }
                continuation.resume()
            }
            loop.schedule(afterMs: 10) { fired.withLock { $0.append(1) } }
        }
        #expect(fired.withLock { $0 } == [1, 2])
        #expect(!loop.cancel(cancelled))
    }

    @Test("a readiness wait times out on a quiet socket and returns once data arrives")
    func readiness() async throws {
        let loop = try IOLoop(name: "test-io")
        let pair = try SocketPair()
        #expect(await !loop.wait(for: .readable, on: pair.ours.raw, timeoutMs: 20))
        #expect(Descriptor.writeAll(pair.theirs.raw, Array("acquired\n".utf8)))
        #expect(await loop.readLine(pair.ours.raw, timeoutMs: 5_000) == "acquired")
    }
}
