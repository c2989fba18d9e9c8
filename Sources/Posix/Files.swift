import Glibc

/// File operations of the daemon's state directory, each with a typed error.
public enum Files {
    /// Creates `path` (and parents) with `mode` if missing; an existing directory keeps its mode.
    public static func ensureDirectory(_ path: String, mode: mode_t = 0o700) throws(SystemCallError) {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else { throw SystemCallError("mkdir(\(path))", errno: .notDirectory) }
            return
        }
        let parent = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !parent.isEmpty && parent != path { try ensureDirectory(parent, mode: 0o755) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw .current("mkdir(\(path))") }
    }

    /// Writes `contents` atomically: a temporary file in the same directory, fsync, rename.
    public static func writeAtomically(_ path: String, contents: String, mode: mode_t) throws(SystemCallError) {
        let temporary = "\(path).tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .current("open(\(temporary))") }
        var failure: SystemCallError?
        let bytes = Array(contents.utf8)
        if bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) != bytes.count { failure = .current("write(\(temporary))") }
        if failure == nil && fchmod(fd, mode) != 0 { failure = .current("fchmod(\(temporary))") }
        if failure == nil && fsync(fd) != 0 { failure = .current("fsync(\(temporary))") }
        close(fd)
        if failure == nil && rename(temporary, path) != 0 { failure = .current("rename(\(path))") }
        if let failure {
            unlink(temporary)
            throw failure
        }
    }

    /// Gives `path` to the group named `group` (the owner stays).
    public static func setGroup(_ path: String, group: String) throws(SystemCallError) {
        guard let entry = getgrnam(group) else { throw SystemCallError("getgrnam(\(group))", errno: .noSuchFileOrDirectory) }
        if chown(path, uid_t.max, entry.pointee.gr_gid) != 0 { throw .current("chown(\(path))") }
    }

    /// Removes a file; a missing file is not an error (cleanup is idempotent).
    public static func remove(_ path: String) throws(SystemCallError) {
        if unlink(path) != 0 && errno != ENOENT { throw .current("unlink(\(path))") }
    }

    /// What `lstat` says about a path, nil when nothing is there.
    public static func kind(_ path: String) -> (isSocket: Bool, isRegular: Bool, ownerUID: uid_t, mode: mode_t)? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        let type = info.st_mode & S_IFMT
        return (type == S_IFSOCK, type == S_IFREG, info.st_uid, info.st_mode & 0o7777)
    }

    /// The last `lines` lines of the file (all of it when shorter), read from at most its
    /// last `window` bytes, and the offset where it ends. Empty for a missing file.
    public static func tail(_ path: String, lines: Int, window: Int) -> (bytes: [UInt8], end: Int64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return ([], 0) }
        defer { close(fd) }
        let end = Int64(lseek(fd, 0, SEEK_END))
        let start = max(0, end - Int64(window))
        var buffer = [UInt8](repeating: 0, count: Int(end - start))
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
        guard n > 0 else { return ([], end) }
        var bytes = Array(buffer[0..<n])
        if lines == 0 { return ([], start + Int64(n)) }
        // Count newlines back from the end; a last line without one counts too.
        var seen = 0
        var cut = bytes.count
        var index = bytes.count - 1
        if bytes.last == 10 { index -= 1 }
        while index >= 0 {
            if bytes[index] == 10 {
                seen += 1
                if seen == lines { cut = index + 1; break }
            }
            index -= 1
        }
        if index < 0 { cut = 0 }
        bytes = Array(bytes[cut...])
        return (bytes, start + Int64(n))
    }

    /// The size of the file at `path` in bytes; 0 when it does not exist.
    public static func size(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }

    /// The device and inode of `path` (following links): what names a directory on this
    /// host for as long as it exists, whatever path reaches it.
    public static func identity(_ path: String) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// A hex string of `byteCount` random bytes from the system generator (getrandom).
    public static func randomHex(byteCount: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<byteCount).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
    }
}

/// An exclusive `flock` on a file, held for the life of the process (or until `unlock`).
/// The kernel drops it when the process dies, so it can never go stale.
public final class FileLock: Sendable {
    public let fd: Int32

    /// Takes the lock without waiting; nil when another process holds it.
    public static func tryLock(_ path: String) throws(SystemCallError) -> FileLock? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .current("open(\(path))") }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return FileLock(fd: fd) }
        let error = SystemCallError.current("flock(\(path))")
        close(fd)
        if error.errno == .wouldBlock { return nil }
        throw error
    }

    private init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }
}
