import Lifecycle
import MicroHTTPD
import Synchronization

/// Connections held open by event streams, log follows and long-polls, bounded
/// (`limits.max_streams`): each holds a connection and a thread's worth of wake-ups for as
/// long as its client likes, and any local user may open them.
final class HeldConnections: Sendable {
    private let held = Atomic<Int>(0)
    private let maximum: SharedValue<Int>

    init(limit: Int) { maximum = SharedValue(limit) }

    var limit: Int { maximum.current }
    var count: Int { held.load(ordering: .relaxed) }

    /// A reload's new limit; connections held past it end as their clients leave.
    func setLimit(_ limit: Int) { maximum.set(limit) }

    /// Takes a place; false at the limit.
    func take() -> Bool {
        let limit = maximum.current
        var current = held.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = held.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func give() { held.subtract(1, ordering: .releasing) }

    /// `stream`, holding a place until it closes; nil at the limit.
    func hold(_ stream: HTTPBodyStream) -> HTTPBodyStream? {
        take() ? HeldStream(inner: stream, owner: self) : nil
    }
}

/// A stream that gives its place back once, when it closes.
private final class HeldStream: HTTPBodyStream {
    let inner: HTTPBodyStream
    let owner: HeldConnections
    private let given = Atomic<Bool>(false)

    init(inner: HTTPBodyStream, owner: HeldConnections) {
        self.inner = inner
        self.owner = owner
    }

    func next() -> [UInt8]? { inner.next() }
    func whenReadable(_ wake: @escaping @Sendable () -> Void) { inner.whenReadable(wake) }

    func close() {
        inner.close()
        if !given.exchange(true, ordering: .acquiringAndReleasing) { owner.give() }
    }
}

extension Problem {
    /// 503: every place for a held connection is taken.
    static func tooManyStreams(_ limit: Int) -> Problem {
        Problem(
            status: 503, slug: "too-many-streams", title: "Too Many Streams",
            detail: "\(limit) streams, follows and long-polls are open (limits.max_streams); try again later",
            headers: [("Retry-After", "1")])
    }
}
