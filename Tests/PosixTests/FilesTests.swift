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
