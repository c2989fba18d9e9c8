import AuditStore
import FoundationEssentials
import Glibc
import Lifecycle
import MicroHTTPD
import Posix
import Synchronization

/// `GET /v1/services/{name}/logs?tail=N[&follow=true]`: the last lines of the service's
/// output (`STATE/logs/NAME.log`), then, when following, what it writes next, as it comes
/// (like `supervisorctl tail -f` and `journalctl -u -f`).
enum ServiceLogs {
    static let maxTail = 10_000
    /// How much of the file's end is read to find the last lines.
    static let tailWindow = 4 << 20

    /// Where the last `lines` lines of the file begin, and where it ends.
    static func tail(_ path: String, lines: Int) -> (start: Int64, end: Int64) {
        Files.tailStart(path, lines: lines, window: tailWindow)
    }
}

/// A log file sent from `offset` in chunks of at most 64 KiB as the client takes them,
/// never held whole: up to `until` (a tail), or on and on as the service writes (a
/// follow). A follow keeps the file open, so a rotation (the file renamed to `NAME.log.1`
/// and a new one begun) loses nothing: the old file is read to its end, then the one that
/// came after it (found by its inode among `NAME.log.K`, should several rotations have
/// passed), then the new one, each from its start. Only a file rotated out of `log_keep`
/// before it was read is lost. A file cut short (emptied) is followed again from its start. A follow
/// ends when the daemon stops (`stopping`), like the event stream.
final class LogFollower: HTTPBodyStream {
    static let checkEveryMs = 250
    static let chunk = 64 << 10

    private let path: String
    private let until: Int64?
    private let stopping: @Sendable () -> Bool
    private struct State {
        var offset: Int64
        /// The file being read, and its inode; -1 before it is opened.
        var fd: Int32 = -1
        var inode: UInt64 = 0
        var timer: Task<Void, Never>?
        var closed = false
    }
    private let state: Mutex<State>

    /// - Parameter until: where a tail ends; nil to follow.
    init(path: String, from offset: Int64, until: Int64?, stopping: @escaping @Sendable () -> Bool) {
        self.path = path
        self.until = until
        self.stopping = stopping
        state = Mutex(State(offset: offset))
    }

    func next() -> [UInt8]? {
        if until == nil && stopping() { return nil }
        return state.withLock { state -> [UInt8]? in
            guard !state.closed else { return nil }
            if let until, state.offset >= until { return nil }
            let nothing: [UInt8]? = until == nil ? [] : nil
            if state.fd < 0 {
                state.fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                guard state.fd >= 0, let identity = Self.identity(fd: state.fd) else { return nothing }
                state.inode = identity.inode
            }
            if let bytes = Self.read(&state, until: until) { return bytes }
            // At the end of the open file: a follow moves on to the file that came after it.
            guard until == nil, let current = Files.identity(path), current.inode != state.inode else { return nothing }
            if let bytes = Self.read(&state, until: nil) { return bytes }  // what came before the rename
            Glibc.close(state.fd)
            (state.fd, state.offset) = (-1, 0)
            // Renamed to NAME.log.K: the next is NAME.log.(K-1), or NAME.log. Several
            // rotations may have passed since the last look; when this file was rotated out
            // altogether, the oldest one kept comes next.
            let generations = (1...ServiceDefinition.logKeepRange.upperBound).map { "\(path).\($0)" }
            let kept = generations.prefix { Files.identity($0) != nil }
            let next = kept.firstIndex { Files.identity($0)?.inode == state.inode }.map { $0 - 1 } ?? kept.count - 1
            if next >= 0 {
                state.fd = open(generations[next], O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                if state.fd >= 0, let identity = Self.identity(fd: state.fd) { state.inode = identity.inode } else { state.fd = -1 }
            }
            return []
        }
    }

    /// The next chunk of the open file from the offset; nil at its end.
    private static func read(_ state: inout State, until: Int64?) -> [UInt8]? {
        var info = stat()
        guard fstat(state.fd, &info) == 0 else { return nil }
        let end = min(Int64(info.st_size), until ?? .max)
        if end < state.offset { state.offset = 0 }  // emptied: from its start again
        guard end > state.offset else { return nil }
        var buffer = [UInt8](repeating: 0, count: Int(min(end - state.offset, Int64(chunk))))
        let n = buffer.withUnsafeMutableBytes { pread(state.fd, $0.baseAddress, $0.count, off_t(state.offset)) }
        guard n > 0 else { return nil }
        state.offset += Int64(n)
        return n == buffer.count ? buffer : Array(buffer[0..<n])
    }

    private static func identity(fd: Int32) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    func whenReadable(_ wake: @escaping @Sendable () -> Void) {
        let timer = Task {
            try? await Task.sleep(for: .milliseconds(Self.checkEveryMs))
            if !Task.isCancelled { wake() }
        }
        state.withLock { state in
            state.timer?.cancel()
            state.timer = timer
        }
    }

    func close() {
        let timer = state.withLock { state -> Task<Void, Never>? in
            state.closed = true
            if state.fd >= 0 { Glibc.close(state.fd) }
            state.fd = -1
            return state.timer
        }
        timer?.cancel()
    }
}
