import Glibc
import SystemPackage

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

    /// Writes `contents` atomically: a temporary file of a random name in the same directory
    /// (created with `O_EXCL|O_NOFOLLOW` on the directory's descriptor, so nothing planted
    /// there is followed or reused), fsync, rename over `path`.
    public static func writeAtomically(_ path: String, contents: String, mode: mode_t) throws(SystemCallError) {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dirFD >= 0 else { throw .current("open(\(directory))") }
        defer { close(dirFD) }
        let temporary = ".\(name).\(randomHex(byteCount: 8)).tmp"
        let fd = openat(dirFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .current("open(\(directory)/\(temporary))") }
        var failure: SystemCallError?
        let bytes = Array(contents.utf8)
        if bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) != bytes.count { failure = .current("write(\(temporary))") }
        if failure == nil && fchmod(fd, mode) != 0 { failure = .current("fchmod(\(temporary))") }
        if failure == nil && fsync(fd) != 0 { failure = .current("fsync(\(temporary))") }
        close(fd)
        if failure == nil && renameat(dirFD, temporary, dirFD, name) != 0 { failure = .current("rename(\(path))") }
        if let failure {
            unlinkat(dirFD, temporary, 0)
            throw failure
        }
    }

    /// Why a directory may not hold the daemon's state, or nil when it may: it must be
    /// owned by `owner` and writable by nobody else, and no directory above it (nor a link
    /// on the way) may let anyone else replace it, unless that directory is root's and
    /// sticky, as /tmp is (sshd's StrictModes rule). Checked on the path as given and on
    /// the path it resolves to.
    public static func unsafeStateDirectoryReason(_ path: String, owner: uid_t) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return "\(path): cannot stat it" }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { return "\(path) is not a directory (a link is not accepted)" }
        guard info.st_uid == owner else { return "\(path) is owned by uid \(info.st_uid), not by procrefd's uid \(owner)" }
        guard info.st_mode & 0o022 == 0 else {
            return "\(path) is writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8))); chmod go-w it"
        }
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard realpath(path, &resolved) != nil else { return "\(path): cannot resolve it" }
        let real = String(cString: resolved)
        for chain in Set([path, real]) {
            for ancestor in ancestors(of: chain) {
                guard lstat(ancestor, &info) == 0 else { return "\(ancestor): cannot stat it" }
                guard info.st_uid == 0 || info.st_uid == owner else {
                    return "\(ancestor), above the state directory, is owned by uid \(info.st_uid) (only root or procrefd's user may own it)"
                }
                let isLink = (info.st_mode & S_IFMT) == S_IFLNK
                let rootSticky = info.st_uid == 0 && info.st_mode & S_ISVTX != 0
                if !isLink && info.st_mode & 0o022 != 0 && !rootSticky {
                    return "\(ancestor), above the state directory, is writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8))): anyone who may write it can replace the state directory"
                }
            }
        }
        return nil
    }

    /// `/a/b/c` → `/a/b`, `/a`, `/` (relative paths from the working directory's view).
    private static func ancestors(of path: String) -> [String] {
        let absolute = path.hasPrefix("/") ? path : (currentDirectory() + "/" + path)
        var parts = absolute.split(separator: "/").map(String.init)
        var result: [String] = []
        while !parts.isEmpty {
            parts.removeLast()
            result.append("/" + parts.joined(separator: "/"))
        }
        return result
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

    /// Where the last `lines` lines of the file begin (looking back at most `window` bytes),
    /// and where it ends, read backwards 64 KiB at a time: the tail itself is then sent
    /// from the file, not held in memory. (0, 0) for a missing file.
    public static func tailStart(_ path: String, lines: Int, window: Int) -> (start: Int64, end: Int64) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return (0, 0) }
        defer { close(fd) }
        let end = Int64(lseek(fd, 0, SEEK_END))
        guard lines > 0 else { return (end, end) }
        let floor = max(0, end - Int64(window))
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        var seen = 0
        var position = end
        var last = true  // the file's last byte: a final newline ends the last line, it does not start one
        while position > floor {
            let from = max(floor, position - Int64(chunk.count))
            let count = Int(position - from)
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(from)) }
            guard n == count else { return (from, end) }
            for index in stride(from: count - 1, through: 0, by: -1) {
                defer { last = false }
                guard chunk[index] == 10, !last else { continue }
                seen += 1
                if seen == lines { return (from + Int64(index) + 1, end) }
            }
            position = from
        }
        return (floor, end)
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
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
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

/// The working directory, for resolving a relative path's ancestors.
private func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    return getcwd(&buffer, buffer.count) != nil ? String(cString: buffer) : "."
}
