import CMicroHTTPD
import FoundationEssentials
import Synchronization

/// Limits of one listener.
public struct HTTPServerLimits: Sendable {
    /// Threads per listener. An acquire or release on the fast path holds its thread for a
    /// holder's answer and a commit: four keep both cores busy (two served one at a time).
    public var threadPoolSize: UInt32 = 4
    public var connectionLimit: UInt32 = 512
    public var connectionTimeoutSeconds: UInt32 = 30
    public var perIPConnectionLimit: UInt32 = 0
    /// libmicrohttpd's pool per connection (headers and read buffer; bodies arrive in chunks).
    /// It zeroes the pool after every request, so a larger one costs CPU on each.
    public var connectionMemoryLimit: Int = 16 * 1024
    public var maxBodyBytes: Int = 64 * 1024
    public init() {}
}

public enum HTTPServerError: Error, CustomStringConvertible {
    case startFailed(Transport)
    public var description: String {
        switch self {
        case .startFailed(let transport): return "libmicrohttpd could not start on the \(transport.rawValue) listener"
        }
    }
}

/// An embedded libmicrohttpd daemon serving one listening socket.
///
/// Each request is answered on a later call than its first (MHD 0.9.75 drops keep-alive when
/// a response is queued on the first call). Asynchronous answers suspend the connection and
/// resume it when the response is ready, so no HTTP thread waits.
public final class HTTPServer: Sendable {
    let context: ServerContext
    private let daemon: DaemonPointer

    /// Starts serving `listenFD` (already bound and listening). The server owns the descriptor.
    /// `defaultHeaders` go on every answer that does not set the same header itself.
    public init(
        listenFD: Int32, transport: Transport, limits: HTTPServerLimits, defaultHeaders: [(String, String)] = [],
        responder: HTTPResponder
    ) throws {
        context = ServerContext(transport: transport, maxBodyBytes: limits.maxBodyBytes, defaultHeaders: defaultHeaders, responder: responder)
        var config = procref_mhd_config(
            listen_fd: listenFD, thread_pool_size: limits.threadPoolSize, connection_limit: limits.connectionLimit,
            connection_timeout_seconds: limits.connectionTimeoutSeconds,
            per_ip_connection_limit: limits.perIPConnectionLimit,
            connection_memory_limit: limits.connectionMemoryLimit)
        let cls = Unmanaged.passUnretained(context).toOpaque()
        // On the Unix socket each connection's peer credentials are read once, as it opens.
        let notify: MHD_NotifyConnectionCallback? = transport == .unix ? mhdConnectionHandler : nil
        guard let started = procref_mhd_start(&config, mhdAccessHandler, cls, mhdCompletedHandler, cls, notify, cls) else {
            throw HTTPServerError.startFailed(transport)
        }
        daemon = DaemonPointer(pointer: started)
    }

    /// Stops accepting new connections; requests in flight go on.
    public func stopAccepting() {
        let fd = MHD_quiesce_daemon(daemon.pointer)
        if fd >= 0 { close(fd) }
    }

    /// Requests begun and not yet completed (answer sent or connection gone).
    public var inFlight: Int { context.inFlight.load(ordering: .relaxed) }

    /// Waits until no request is in flight, or `timeoutMs` passes. Returns whether idle.
    public func waitIdle(timeoutMs: Int) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        while inFlight > 0 {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// Stops the daemon. Waits for MHD's threads to finish.
    public func stop() {
        MHD_stop_daemon(daemon.pointer)
    }
}

/// The raw daemon handle; MHD's API is thread-safe for the calls made on it.
struct DaemonPointer: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// What the C callbacks need, reached through MHD's `cls` pointer.
final class ServerContext: Sendable {
    let transport: Transport
    let inFlight = Atomic<Int>(0)
    let maxBodyBytes: Int
    let defaultHeaders: [(String, String)]
    let responder: HTTPResponder

    init(transport: Transport, maxBodyBytes: Int, defaultHeaders: [(String, String)], responder: HTTPResponder) {
        self.transport = transport
        self.maxBodyBytes = maxBodyBytes
        self.defaultHeaders = defaultHeaders
        self.responder = responder
    }
}
