import Glibc
import SystemPackage

/// A small file in a place that someone else controls (a service's pid file): read by root
/// without following a link, without blocking on a FIFO or device, and only when it is a
/// regular file of an expected owner, written no earlier than a given time.
public enum UntrustedFile {
    /// Why such a file was not read.
    public enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        /// Nothing there (yet).
        case missing
        /// Written before `notBefore`: left from an earlier run.
        case stale
        /// A symbolic link, FIFO, device, socket or directory.
        case notRegular(String)
        /// Owned by a user not in the allowed set.
        case owner(uid_t)
        /// Any other failure of the calls.
        case failed(SystemCallError)

        public var description: String {
            switch self {
            case .missing: return "does not exist"
            case .stale: return "was written before this start"
            case .notRegular(let kind): return "is \(kind), not a regular file"
            case .owner(let uid): return "is owned by uid \(uid), not by root or the service's user"
            case .failed(let error): return "\(error)"
            }
        }
    }

    /// Reads at most `limit` bytes of `path`.
    /// - Parameters:
    ///   - owners: the uids that may own it.
    ///   - notBefore: the earliest modification time accepted (CLOCK_REALTIME), if any.
    public static func read(_ path: String, owners: Set<uid_t>, notBefore: timespec? = nil, limit: Int = 64) throws(Refusal) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            let error = SystemCallError.current("open(\(path))")
            switch error.errno {
            case .noSuchFileOrDirectory: throw .missing
            case .tooManySymbolicLinkLevels: throw .notRegular("a symbolic link")
            default: throw .failed(error)
            }
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .failed(.current("fstat(\(path))")) }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFIFO: throw .notRegular("a FIFO")
        case S_IFCHR, S_IFBLK: throw .notRegular("a device")
        case S_IFSOCK: throw .notRegular("a socket")
        case S_IFDIR: throw .notRegular("a directory")
        default: throw .notRegular("not a file")
        }
        guard owners.contains(info.st_uid) else { throw .owner(info.st_uid) }
        if let notBefore {
            let written = info.st_mtim
            if written.tv_sec < notBefore.tv_sec || (written.tv_sec == notBefore.tv_sec && written.tv_nsec < notBefore.tv_nsec) {
                throw .stale
            }
        }
        var bytes = [UInt8](repeating: 0, count: limit)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { throw .failed(.current("read(\(path))")) }
        return Array(bytes[0..<count])
    }

    /// Now, on the clock that file modification times are stamped with (the coarse
    /// real-time clock): a file written after this call has an mtime no earlier.
    public static func now() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &now)
        return now
    }
}
