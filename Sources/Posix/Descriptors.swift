import CPosixShims
import Glibc

/// A descriptor this value owns: closed exactly once, when the value ends, unless `take()`
/// hands its number to a new owner that closes it itself (a holder's record, a table).
@frozen
public struct OwnedDescriptor: ~Copyable, Sendable {
    public let raw: Int32

    public init(_ raw: Int32) { self.raw = raw }

    /// The number, now the caller's to close.
    public consuming func take() -> Int32 {
        let raw = self.raw
        discard self
        return raw
    }

    deinit { _ = procref_close(raw) }
}

/// A connected pair of close-on-exec Unix stream sockets (a two-way pipe): the end procrefd
/// keeps, and the end a child is given as one of its descriptors.
@frozen
public struct SocketPair: ~Copyable {
    public let ours: OwnedDescriptor
    public let theirs: OwnedDescriptor

    /// `messages`: SOCK_SEQPACKET, so each message arrives whole, with a descriptor passed
    /// along it (a front door's control socket).
    public init(messages: Bool = false) throws(SystemCallError) {
        var fds: [Int32] = [-1, -1]
        try check("socketpair", fds.withUnsafeMutableBufferPointer {
            messages ? procref_socketpair_seqpacket_cloexec($0.baseAddress) : procref_socketpair_cloexec($0.baseAddress)
        })
        ours = OwnedDescriptor(fds[0])
        theirs = OwnedDescriptor(fds[1])
    }
}

/// A connected pair of close-on-exec Unix datagram sockets, message boundaries kept: the
/// end procrefd reads, and the end many writers share (each child holding a copy).
@frozen
public struct DatagramPair: ~Copyable {
    public let reader: OwnedDescriptor
    public let writers: OwnedDescriptor

    public init() throws(SystemCallError) {
        var fds: [Int32] = [-1, -1]
        try check("socketpair", fds.withUnsafeMutableBufferPointer { procref_socketpair_datagram_cloexec($0.baseAddress) })
        reader = OwnedDescriptor(fds[0])
        writers = OwnedDescriptor(fds[1])
    }
}

/// A pipe, both ends close-on-exec (a spawn passes the end it gives as 0, 1 or 2).
@frozen
public struct PipeEnds: ~Copyable {
    public let readEnd: OwnedDescriptor
    public let writeEnd: OwnedDescriptor

    public init() throws(SystemCallError) {
        var fds: [Int32] = [-1, -1]
        _ = try check("pipe2", procref_pipe_cloexec(&fds))
        readEnd = OwnedDescriptor(fds[0])
        writeEnd = OwnedDescriptor(fds[1])
    }
}

public enum Descriptor {
    /// Writes all of `bytes`; false if the peer is gone or the write failed.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { procref_write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Writes a short message (one call) with `fd` passed along (SCM_RIGHTS): the receiver
    /// gets its own descriptor of the same file.
    public static func send(_ socket: Int32, _ bytes: [UInt8], passing fd: Int32) -> Bool {
        bytes.withUnsafeBytes { procref_send_with_fd(socket, $0.baseAddress, $0.count, fd) } == bytes.count
    }

    public static func close(_ fd: Int32) {
        if fd >= 0 { _ = procref_close(fd) }
    }

    /// Waits up to `timeoutMs` for one datagram and returns it; nil on timeout, [] on an
    /// error other than a timeout (the caller decides whether to go on).
    public static func receiveDatagram(_ fd: Int32, timeoutMs: Int, limit: Int = 128) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: limit)
        let n = buffer.withUnsafeMutableBytes { procref_receive(fd, $0.baseAddress, $0.count, Int32(timeoutMs)) }
        if n == -2 { return nil }
        return n > 0 ? Array(buffer[0..<n]) : []
    }

    /// What a blocking line read got.
    public enum LineRead: Sendable, Equatable {
        case line(String)
        case timedOut
        /// End of file (or an error) before a newline.
        case closed
    }

    /// Reads a one-line message (without its newline), blocking the calling thread at most
    /// `timeoutMs`: for a peer that answers within microseconds, where a wait on the I/O
    /// loop would cost two thread wake-ups. The peer must send nothing after its line.
    public static func readLine(_ fd: Int32, timeoutMs: Int, limit: Int = 256) -> LineRead {
        let deadline = monotonicMilliseconds() + Int64(timeoutMs)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64)
        while bytes.count < limit {
            // The answer is seldom there yet: poll first, then read.
            let left = deadline - monotonicMilliseconds()
            var ready: Int32 = 0, unused: Int32 = 0
            guard left > 0, procref_poll2(fd, -1, Int32(left), &ready, &unused) != 0 else {
                if left > 0 { continue }  // woke a little before the deadline
                return .timedOut
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                bytes += chunk[0..<n]
                if let newline = bytes.firstIndex(of: 10) { return .line(String(decoding: bytes[..<newline], as: UTF8.self)) }
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                return .closed
            }
        }
        return .closed
    }

    /// Opens (creating, appending) a log file for a child's output.
    public static func openLog(_ path: String) throws(SystemCallError) -> OwnedDescriptor {
        OwnedDescriptor(try check("open(\(path))", open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o600)))
    }
}

/// Monotonic milliseconds (CLOCK_MONOTONIC): deadlines that wall-clock changes cannot move.
public func monotonicMilliseconds() -> Int64 { procref_monotonic_ms() }

/// Watches a socket for its peer's hang-up, through a close-on-exec copy of the descriptor,
/// so the caller's own may close at any time after `cancel`.
public final class HangupWatch: Sendable {
    private let copy: Int32
    private let loop: IOLoop
    private let watch: IOLoop.WatchID

    /// nil when the socket cannot be copied or watched.
    public init?(socket fd: Int32, loop: IOLoop, onHangup: @escaping @Sendable () -> Void) {
        let copy = procref_dup_cloexec(fd)
        guard copy >= 0 else { return nil }
        guard let watch = loop.watch(.hangup, on: copy, handler: onHangup) else {
            close(copy)
            return nil
        }
        (self.copy, self.loop, self.watch) = (copy, loop, watch)
    }

    /// Ends the watch (the handler is not called after it returns, unless already running).
    public func cancel() { loop.unwatch(watch) }

    deinit {
        loop.unwatch(watch)
        close(copy)
    }
}

