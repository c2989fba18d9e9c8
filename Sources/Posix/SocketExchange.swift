import CPosixShims
import Glibc
import SystemPackage

/// One request/response exchange over a stream socket, blocking the calling thread: connect,
/// send everything, read until the peer closes (or `enough` says so), all within one
/// deadline. Used by the CLI to talk to the daemon (`APIClient`, `ControlCommands`).
/// Inside procrefd, health checks use the IOLoop's non-blocking form
/// (`IOLoop.exchange`, IOLoopSockets.swift) with the same `Destination`.
public enum SocketExchange {
    public enum Destination: Sendable {
        case unix(path: String)
        case tcp(host: String, port: Int)
    }

    public static func exchange(
        _ destination: Destination, request: [UInt8], timeoutMs: Int, limit: Int = 1 << 20,
        enough: ([UInt8]) -> Bool = { _ in false }
    ) throws(SystemCallError) -> [UInt8] {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        let fd = try connect(destination, timeoutMs: timeoutMs)
        defer { close(fd) }
        try send(fd, request, until: deadline)
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while response.count < limit && !enough(response) {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n > 0 { response += chunk[0..<n]; continue }
            if errno != EAGAIN && errno != EINTR { throw .current("read") }
            try wait(fd, for: Int16(POLLIN), until: deadline)
        }
        return response
    }

    /// Connects, sends `request`, then hands every chunk read to `received` until the peer
    /// closes or `received` returns false. Only connecting and sending have a deadline: a
    /// followed stream may stay quiet for as long as it likes.
    public static func stream(
        _ destination: Destination, request: [UInt8], timeoutMs: Int, received: ([UInt8]) -> Bool
    ) throws(SystemCallError) {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        let fd = try connect(destination, timeoutMs: timeoutMs)
        defer { close(fd) }
        try send(fd, request, until: deadline)
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { return }
            if n > 0 {
                if !received(Array(chunk[0..<n])) { return }
                continue
            }
            if errno != EAGAIN && errno != EINTR { throw .current("read") }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, -1)
        }
    }

    private static func connect(_ destination: Destination, timeoutMs: Int) throws(SystemCallError) -> Int32 {
        switch destination {
        case .unix(let path): return try check("connect(\(path))", procref_unix_connect(path, Int32(timeoutMs)))
        case let .tcp(host, port): return try check("connect(\(host):\(port))", procref_tcp_connect(host, String(port), Int32(timeoutMs)))
        }
    }

    private static func send(_ fd: Int32, _ request: [UInt8], until deadline: Int64) throws(SystemCallError) {
        var offset = 0
        while offset < request.count {
            let n = request[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { offset += n; continue }
            if n < 0 && errno != EAGAIN && errno != EINTR { throw .current("write") }
            try wait(fd, for: Int16(POLLOUT), until: deadline)
        }
    }

    private static func wait(_ fd: Int32, for events: Int16, until deadline: Int64) throws(SystemCallError) {
        let left = deadline - monotonicMilliseconds()
        guard left > 0 else { throw SystemCallError("poll", errno: .timedOut) }
        var entry = pollfd(fd: fd, events: events, revents: 0)
        if poll(&entry, 1, Int32(left)) == 0 { throw SystemCallError("poll", errno: .timedOut) }
    }
}
