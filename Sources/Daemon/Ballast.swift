import Glibc
import Posix
import SystemPackage

/// A file of reserved room in the state dir: on a full disk it is deleted, so that the fact,
/// and the records that waited, can still be written.
public struct Ballast: Sendable {
    public let path: String
    public let bytes: Int

    public init(path: String, bytes: Int) {
        self.path = path
        self.bytes = bytes
    }

    /// Makes the file, its blocks allocated, unless it is there already (a regular file of
    /// ours). Fails (ENOSPC) while the disk lacks the room, leaving nothing behind.
    public func ensure() throws(SystemCallError) {
        if let kind = Files.kind(path), kind.isRegular, kind.ownerUID == geteuid(), Files.size(path) >= Int64(bytes) { return }
        try Files.remove(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .current("open(\(path))") }
        let result = posix_fallocate(fd, 0, off_t(bytes))
        close(fd)
        guard result == 0 else {
            unlink(path)
            throw SystemCallError("posix_fallocate(\(path))", errno: .init(rawValue: result))
        }
    }

    /// Deletes the file; true when it was there to free.
    public func release() -> Bool {
        unlink(path) == 0
    }
}
