import AuditStore
import FoundationEssentials
import MicroHTTPD
import Synchronization

/// `GET /v1/events` with `Accept: application/x-ndjson`: matching events, one JSON object per
/// line, as they are committed, until the client leaves or the daemon stops. A blank line
/// every 15 s keeps idle connections alive (and lets a departed client be noticed).
final class EventStream: HTTPBodyStream {
    static let heartbeatMs = 15_000
    static let batch = 500

    private let store: AuditStore
    private let filter: EventFilter

    private struct State {
        var cursor: Int64
        var waiter: UInt64?
        var heartbeat: Task<Void, Never>?
        var heartbeatDue = false
        var closed = false
    }

    private let state: Mutex<State>

    init(store: AuditStore, filter: EventFilter) {
        self.store = store
        self.filter = filter
        state = Mutex(State(cursor: filter.after))
    }

    func next() -> [UInt8]? {
        if store.signal.isClosed || state.withLock({ $0.closed }) { return nil }
        // Everything up to `scanned` is committed: a page with no match lets the cursor skip it.
        let scanned = store.signal.lastID
        var page = filter
        page.after = state.withLock { $0.cursor }
        page.limit = Self.batch
        guard let events = try? store.read({ try $0.events(page) }) else { return nil }
        let newest = events.last?.id ?? page.after
        let cursor = events.count == Self.batch ? newest : max(newest, scanned)
        let heartbeat = state.withLock { state -> Bool in
            state.cursor = cursor
            defer { state.heartbeatDue = false }
            return state.heartbeatDue
        }
        if events.isEmpty { return heartbeat ? [10] : [] }
        return ndjson(events)
    }

    func whenReadable(_ wake: @escaping @Sendable () -> Void) {
        let once = OnceWake(wake)
        let cursor = state.withLock { $0.cursor }
        let token = store.signal.notify(after: cursor) { once.fire() }
        let heartbeat = Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(Self.heartbeatMs))
            guard let self, !Task.isCancelled else { return }
            self.state.withLock { $0.heartbeatDue = true }
            once.fire()
        }
        state.withLock { state in
            state.waiter = token
            state.heartbeat?.cancel()
            state.heartbeat = heartbeat
        }
    }

    func close() {
        let (token, heartbeat) = state.withLock { state -> (UInt64?, Task<Void, Never>?) in
            state.closed = true
            return (state.waiter, state.heartbeat)
        }
        if let token { store.signal.cancel(token) }
        heartbeat?.cancel()
    }
}

/// Events as NDJSON lines.
func ndjson(_ events: [Event]) -> [UInt8] {
    var bytes: [UInt8] = []
    for event in events {
        if let line = try? lineEncoder.encode(event) {
            bytes += line
            bytes.append(10)
        }
    }
    return bytes
}

private let lineEncoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
}()

/// Runs a wake-up at most once, whichever of its triggers comes first.
final class OnceWake: Sendable {
    private let fired = Atomic<Bool>(false)
    private let wake: @Sendable () -> Void
    init(_ wake: @escaping @Sendable () -> Void) { self.wake = wake }
    func fire() {
        if fired.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged { wake() }
    }
}
