import Foundation
import Glibc
import Posix
import Testing

@Suite("IOLoop shutdown")
struct IOLoopShutdownTests {
    /// Whether a thread of this process has `name` (its comm).
    func threadRuns(_ name: String) -> Bool {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.contains { task in
            (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines) == name
        }
    }

    @Test("shutdown ends the loop's thread; a pending wait answers false, and one after it at once")
    func shutdown() async throws {
        let name = "io-\(UUID().uuidString.prefix(8).lowercased())"
        let loop = try IOLoop(name: name)
        #expect(waitFor { threadRuns(name) })
        let pair = try SocketPair()
        let quiet = pair.ours.raw
        // Nothing is ever written: the wait ends only by the shutdown.
        let pending = Task { await loop.wait(for: .readable, on: quiet, timeoutMs: nil) }
        loop.schedule(afterMs: 50) { loop.shutdown() }
        #expect(await pending.value == false)
        #expect(waitFor { !threadRuns(name) })
        #expect(await loop.wait(for: .readable, on: pair.ours.raw, timeoutMs: nil) == false)
        #expect(throws: SystemCallError.self) { try loop.watchReadable(pair.ours.raw) {} }
    }
}
