import Foundation
import Glibc
import Posix
import Testing

@Suite("SysV semaphore set")
struct SemaphoreSetTests {
    /// A key no other test uses.
    func uniqueKey() -> Int32 { SemaphoreSet.key(forService: "posix-test-\(UUID().uuidString)") }

    @Test("keys are stable, positive, and differ by name")
    func keyDerivation() {
        let a = SemaphoreSet.key(forService: "postgres")
        #expect(a == SemaphoreSet.key(forService: "postgres"))
        #expect(a > 0)
        #expect(a != SemaphoreSet.key(forService: "postgres2"))
        // FNV-1a of "procrefd:postgres", documented in the README; pinned so it never drifts.
        #expect(a == 0x03d5_c71b)
    }

    @Test("a new set is 0600, all zero; references count and are undone by the kernel")
    func createCountRemove() throws {
        let set = try SemaphoreSet.openOrCreate(key: uniqueKey())
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
        let set = try SemaphoreSet.openOrCreate(key: uniqueKey())
        defer { try? set.remove() }
        #expect(try set.tryLockStartup())
        #expect(try !set.tryLockStartup())
        try set.unlockStartup()
        #expect(try set.tryLockStartup())
        try set.unlockStartup()
    }

    @Test("an existing set with another mode is refused, not reused")
    func foreignSet() throws {
        let key = uniqueKey()
        let set = try SemaphoreSet.openOrCreate(key: key, mode: 0o600)
        defer { try? set.remove() }
        #expect(throws: SemaphoreSet.OpenError.self) { try SemaphoreSet.openOrCreate(key: key, mode: 0o660) }
        #expect(try SemaphoreSet.openOrCreate(key: key, mode: 0o600) == set)
    }

    @Test("removal is idempotent and the set is gone")
    func removal() throws {
        let key = uniqueKey()
        let set = try SemaphoreSet.openOrCreate(key: key)
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
