import CPosixShims
import Foundation
import Glibc
import Posix
import Testing

@Suite("SysV semaphore set")
struct SemaphoreSetTests {
    /// A key no other test uses.
    func uniqueKey() -> Int32 { SemaphoreSet.key(scope: "posix-test", service: UUID().uuidString.lowercased()) }

    /// A new set at a key no other test uses.
    func newSet(mode: UInt32 = 0o600) throws -> SemaphoreSet {
        try #require(try SemaphoreSet.create(key: uniqueKey(), mode: mode))
    }

    @Test("keys are stable, positive, and differ by state dir, name and attempt")
    func keyDerivation() {
        let a = SemaphoreSet.key(scope: "2049.1234", service: "postgres")
        #expect(a == SemaphoreSet.key(scope: "2049.1234", service: "postgres"))
        #expect(a > 0)
        #expect(a != SemaphoreSet.key(scope: "2049.1234", service: "postgres2"))
        #expect(a != SemaphoreSet.key(scope: "2049.1235", service: "postgres"))
        // FNV-1a of "procrefd:2049.1234:postgres", documented in the README; pinned so it never drifts.
        #expect(a == 0x1f2a_c702)
        #expect(SemaphoreSet.key(scope: "2049.1234", service: "postgres", attempt: 1) == 0x6eb3_1966)
    }

    @Test("a new set is 0600, all zero; references count and are undone by the kernel")
    func createCountRemove() throws {
        let set = try newSet()
        defer { try? set.remove() }
        let info = try set.stat()
        #expect(info.mode == 0o600)
        #expect(info.nsems == 2)
        #expect(try set.count() == 0)

        // A child process takes a reference with SEM_UNDO and is killed: the count returns.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "\(binDirectory)/procref-holder")
        child.arguments = [String(set.id), "0", "0"]
        child.standardOutput = FileHandle.nullDevice
        try child.run()
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL) } }
        #expect(waitFor { (try? set.count()) == 1 }, "holder took no reference")
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        #expect(try set.count() == 0)
    }

    @Test("the startup lock is exclusive and released")
    func startupLock() throws {
        let set = try newSet()
        defer { try? set.remove() }
        #expect(try set.tryLockStartup())
        #expect(try !set.tryLockStartup())
        try set.unlockStartup()
        #expect(try set.tryLockStartup())
        try set.unlockStartup()
    }

    @Test("a set is created only where none exists; only the recorded key, id and mode count as ours")
    func exclusiveCreate() throws {
        let set = try newSet()
        defer { try? set.remove() }
        #expect(try SemaphoreSet.create(key: set.key) == nil)
        #expect(SemaphoreSet.isRecorded(key: set.key, id: set.id, mode: 0o600))
        #expect(!SemaphoreSet.isRecorded(key: set.key, id: set.id, mode: 0o660))
        #expect(!SemaphoreSet.isRecorded(key: set.key, id: set.id + 1, mode: 0o600))
        #expect(!SemaphoreSet.isRecorded(key: uniqueKey(), id: set.id, mode: 0o600))
        try set.remove()
        #expect(!SemaphoreSet.isRecorded(key: set.key, id: set.id, mode: 0o600))
    }

    @Test("removal is idempotent and the set is gone")
    func removal() throws {
        let set = try newSet()
        let key = set.key
        try set.remove()
        try set.remove()
        #expect(try SemaphoreSet.existing(key: key) == nil)
    }
}

/// The binaries built next to the tests.
let binDirectory: String = {
    if let dir = ProcessInfo.processInfo.environment["PROCREFD_BIN_DIR"], !dir.isEmpty { return dir }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug").path
}()

func waitFor(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}
