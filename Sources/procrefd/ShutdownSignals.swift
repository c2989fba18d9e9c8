import Dispatch
import Glibc

/// SIGTERM and SIGINT, delivered as an async value instead of killing the process, so that
/// the daemon can drain first.
final class ShutdownSignals: Sendable {
    private let stream: AsyncStream<String>
    private let sources: [DispatchSourceSignalBox]

    init() {
        var continuation: AsyncStream<String>.Continuation!
        stream = AsyncStream { continuation = $0 }
        let sink = continuation!
        sources = [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")].map { signo, name in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler { sink.yield(name) }
            source.resume()
            return DispatchSourceSignalBox(source: source)
        }
    }

    /// The name of the next shutdown signal.
    func next() async -> String {
        for await name in stream { return name }
        return "end"
    }
}

/// Keeps a signal source alive; it is only touched at creation.
struct DispatchSourceSignalBox: @unchecked Sendable {
    let source: DispatchSourceSignal
}
