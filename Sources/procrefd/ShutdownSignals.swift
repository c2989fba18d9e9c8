import Daemon
import Dispatch
import Glibc
import Lifecycle

/// Why the daemon is stopping: a signal, or `POST /v1/daemon/stop` (which may name a mode).
struct ShutdownTrigger: Sendable {
    let reason: String
    let mode: ShutdownMode?
}

/// SIGTERM and SIGINT (and stop requests from the API), delivered as async values instead of
/// killing the process, so that the daemon can finish requests and drain first.
final class ShutdownSignals: Sendable {
    private let stream: AsyncStream<ShutdownTrigger>
    private let continuation: AsyncStream<ShutdownTrigger>.Continuation
    private let sources: [DispatchSourceSignalBox]

    init() {
        let (stream, continuation) = AsyncStream<ShutdownTrigger>.makeStream()
        self.stream = stream
        self.continuation = continuation
        sources = [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")].map { signo, name in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler { continuation.yield(ShutdownTrigger(reason: name, mode: nil)) }
            source.resume()
            return DispatchSourceSignalBox(source: source)
        }
    }

    /// A stop asked for through the API.
    func request(mode: ShutdownMode?) {
        continuation.yield(ShutdownTrigger(reason: "api", mode: mode))
    }

    /// The next shutdown trigger.
    func next() async -> ShutdownTrigger {
        for await trigger in stream { return trigger }
        return ShutdownTrigger(reason: "end", mode: nil)
    }
}

/// Keeps a signal source alive; it is only touched at creation.
struct DispatchSourceSignalBox: @unchecked Sendable {
    let source: DispatchSourceSignal
}
