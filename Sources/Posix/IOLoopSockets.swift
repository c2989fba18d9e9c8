import CPosixShims
import Glibc
import SystemPackage

/// Socket work awaited on the I/O loop: a connect, an exchange or a line read never blocks a
/// thread, however slow the peer.
extension IOLoop {
    /// Connects within `timeoutMs`; returns the (non-blocking) descriptor, which the caller
    /// closes. Every address of a TCP host is tried in turn.
    public func connect(_ destination: SocketExchange.Destination, timeoutMs: Int) async throws(SystemCallError) -> Int32 {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        var index: Int32 = 0
        var lastError = SystemCallError("connect", errno: .connectionRefused)
        while true {
            let fd: Int32
            switch destination {
            case .unix(let path):
                guard index == 0 else { throw lastError }
                fd = procref_unix_connect_begin(path)
                if fd < 0 { throw .current("connect(\(path))") }
            case let .tcp(host, port):
                fd = procref_tcp_connect_begin(host, String(port), index)
                if fd < 0 {
                    if errno == ENOENT, index > 0 { throw lastError }
                    throw .current("connect(\(host):\(port))")
                }
            }
            index += 1
            let left = Int(max(0, deadline - monotonicMilliseconds()))
            guard await wait(for: .writable, on: fd, timeoutMs: left) else {
                close(fd)
                throw SystemCallError("connect", errno: .timedOut)
            }
            if procref_connect_result(fd) == 0 { return fd }
            lastError = .current("connect")
            close(fd)
        }
    }

    /// Connects, sends `request`, and reads until the peer closes, `limit` bytes, or
    /// `enough` says so, all within `timeoutMs`.
    public func exchange(
        _ destination: SocketExchange.Destination, request: [UInt8], timeoutMs: Int, limit: Int = 1 << 20,
        enough: ([UInt8]) -> Bool = { _ in false }
    ) async throws(SystemCallError) -> [UInt8] {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        let fd = try await connect(destination, timeoutMs: timeoutMs)
        defer { close(fd) }
        var offset = 0
        while offset < request.count {
            let n = request[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { offset += n; continue }
            if n < 0 && errno != EAGAIN && errno != EINTR { throw .current("write") }
            try await waitReady(.writable, fd, until: deadline)
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while response.count < limit && !enough(response) {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n > 0 { response += chunk[0..<n]; continue }
            if errno != EAGAIN && errno != EINTR { throw .current("read") }
            try await waitReady(.readable, fd, until: deadline)
        }
        return response
    }

    /// Reads a one-line message (without its newline) within `timeoutMs`. The peer must
    /// send nothing after its line. nil on timeout, or end of file before a newline.
    public func readLine(_ fd: Int32, timeoutMs: Int, limit: Int = 256) async -> String? {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64)
        while bytes.count < limit {
            guard (try? await waitReady(.readable, fd, until: deadline)) != nil else { return nil }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { return nil }
            bytes += chunk[0..<n]
            if let newline = bytes.firstIndex(of: 10) { return String(decoding: bytes[..<newline], as: UTF8.self) }
        }
        return nil
    }

    private func waitReady(_ readiness: Readiness, _ fd: Int32, until deadline: Int64) async throws(SystemCallError) {
        let left = deadline - monotonicMilliseconds()
        guard left > 0, await wait(for: readiness, on: fd, timeoutMs: Int(left)) else {
            throw SystemCallError("poll", errno: .timedOut)
        }
    }
}
