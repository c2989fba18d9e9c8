import Foundation
import Glibc
import Posix
import Testing

@Suite("State files")
struct FilesTests {
    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "procrefd-files-\(UUID().uuidString)"
        try Files.ensureDirectory(path)
        return path
    }

    @Test("atomic writes land whole with the requested mode")
    func atomicWrite() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Files.writeAtomically("\(dir)/pid", contents: "123\n", mode: 0o644)
        #expect(readSmallFile("\(dir)/pid") == "123\n")
        #expect(Files.kind("\(dir)/pid")?.mode == 0o644)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["pid"])
        try Files.remove("\(dir)/pid")
        try Files.remove("\(dir)/pid")
    }

    @Test("an atomic write uses a fresh random temporary name and never follows a planted link")
    func atomicWriteNoFollow() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "keep\n".write(toFile: "\(dir)/victim", atomically: false, encoding: .utf8)
        // The old predictable temporary name, planted as a link: not used.
        #expect(symlink("\(dir)/victim", "\(dir)/token.tmp.\(getpid())") == 0)
        #expect(symlink("\(dir)/victim", "\(dir)/token") == 0)
        try Files.writeAtomically("\(dir)/token", contents: "secret\n", mode: 0o600)
        #expect(readSmallFile("\(dir)/victim") == "keep\n")
        #expect(Files.kind("\(dir)/token")?.isRegular == true)
        #expect(readSmallFile("\(dir)/token") == "secret\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["token", "token.tmp.\(getpid())", "victim"])
        // The lock file is not opened through a link either.
        #expect(symlink("\(dir)/victim", "\(dir)/lock") == 0)
        #expect(throws: SystemCallError.self) { try FileLock.tryLock("\(dir)/lock") }
    }

    @Test("a state directory must be its owner's alone, and so must every directory above it (sticky root dirs aside)")
    func stateDirectoryOwnership() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = "\(dir)/a/state"
        try Files.ensureDirectory(state, mode: 0o700)
        chmod("\(dir)/a", 0o755)
        #expect(Files.unsafeStateDirectoryReason(state, owner: geteuid()) == nil)
        // A group-writable parent: anyone in the group could rename the state dir away.
        chmod("\(dir)/a", 0o775)
        #expect(Files.unsafeStateDirectoryReason(state, owner: geteuid())?.contains("\(dir)/a,") == true)
        // Sticky and root's, as /tmp: accepted (tests run as root).
        chmod("\(dir)/a", 0o1777)
        #expect(Files.unsafeStateDirectoryReason(state, owner: geteuid()) == (geteuid() == 0 ? nil : Files.unsafeStateDirectoryReason(state, owner: geteuid())))
        chmod("\(dir)/a", 0o755)
        // Another user's state dir, or a state dir reached through a link, is refused.
        #expect(Files.unsafeStateDirectoryReason(state, owner: geteuid() &+ 1)?.contains("owned by uid") == true)
        #expect(symlink(state, "\(dir)/link") == 0)
        #expect(Files.unsafeStateDirectoryReason("\(dir)/link", owner: geteuid())?.contains("not a directory") == true)
        chmod(state, 0o770)
        #expect(Files.unsafeStateDirectoryReason(state, owner: geteuid())?.contains("writable by group") == true)
    }

    @Test("the lock file admits one holder at a time")
    func fileLock() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var first = try FileLock.tryLock("\(dir)/lock")
        #expect(first != nil)
        // flock locks belong to open file descriptions: a second open is refused.
        #expect(try FileLock.tryLock("\(dir)/lock") == nil)
        first = nil
        #expect(try FileLock.tryLock("\(dir)/lock") != nil)
    }

    @Test("a Unix listener has exactly the requested mode")
    func unixListenerMode() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fd = try Listener.unix(path: "\(dir)/s.sock", mode: 0o600)
        defer { close(fd) }
        #expect(Files.kind("\(dir)/s.sock")?.isSocket == true)
        #expect(Files.kind("\(dir)/s.sock")?.mode == 0o600)
        #expect((try? Probe.unix(path: "\(dir)/s.sock", timeoutMs: 500).get()) != nil)
    }

    @Test("the open-file limit is raised where allowed and never lowered")
    func descriptorLimit() throws {
        var before = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &before)
        #expect(try DescriptorLimit.raise(toAtLeast: 16) == Int(before.rlim_cur))  // already above: unchanged
        let soft = try DescriptorLimit.raise(toAtLeast: Int(before.rlim_cur) + 1)
        var after = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &after)
        #expect(soft == Int(after.rlim_cur))
        #expect(after.rlim_cur >= before.rlim_cur && after.rlim_max >= before.rlim_max)
    }
}
