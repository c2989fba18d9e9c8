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

    /// The last `lines` lines of the file, and where it ends.
    static func tail(_ path: String, lines: Int) -> (bytes: [UInt8], end: Int64) {
        Files.tail(path, lines: lines, window: tailWindow)
    }
}

/// What a followed log file gains, read from where the last read stopped. A file cut
/// short (rotated by hand) is followed again from its start. It ends when the daemon stops
/// (`stopping`), like the event stream.
final class LogFollower: HTTPBodyStream {
    static let checkEveryMs = 250

    private let path: String
    private let stopping: @Sendable () -> Bool
    private struct State {
        /// The tail, sent first.
        var pending: [UInt8]
        var offset: Int64
        var timer: Task<Void, Never>?
        var closed = false
    }
    private let state: Mutex<State>

    init(path: String, tail: [UInt8], offset: Int64, stopping: @escaping @Sendable () -> Bool) {
        self.path = path
        self.stopping = stopping
        state = Mutex(State(pending: tail, offset: offset))
    }

    func next() -> [UInt8]? {
        let (offset, pending) = state.withLock { state -> (Int64, [UInt8]) in
            defer { state.pending = [] }
            return (state.closed ? -1 : state.offset, state.pending)
        }
        if !pending.isEmpty { return pending }
        if stopping() { return nil }
        guard offset >= 0 else { return nil }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { Glibc.close(fd) }
        let end = Int64(lseek(fd, 0, SEEK_END))
        let from = end < offset ? 0 : offset
        guard end > from else { return [] }
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
