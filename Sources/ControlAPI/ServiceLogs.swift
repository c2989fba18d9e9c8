import AuditStore
import Foundation
import Glibc
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
/// follow). A file cut short (rotated by hand) is followed again from its start. A follow
/// ends when the daemon stops (`stopping`), like the event stream.
final class LogFollower: HTTPBodyStream {
    static let checkEveryMs = 250

    private let path: String
    private let until: Int64?
    private let stopping: @Sendable () -> Bool
    private struct State {
        var offset: Int64
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
        let offset = state.withLock { $0.closed ? -1 : $0.offset }
        guard offset >= 0 else { return nil }
        if let until, offset >= until { return nil }
        if until == nil && stopping() { return nil }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return until == nil ? [] : nil }
        defer { Glibc.close(fd) }
        let end = min(Int64(lseek(fd, 0, SEEK_END)), until ?? .max)
        let from = end < offset ? 0 : offset
        guard end > from else { return until == nil ? [] : nil }
        var buffer = [UInt8](repeating: 0, count: Int(min(end - from, 64 << 10)))
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(from)) }
        guard n > 0 else { return [] }
        state.withLock { $0.offset = from + Int64(n) }
        return Array(buffer[0..<n])
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
            return state.timer
        }
        timer?.cancel()
    }
}
