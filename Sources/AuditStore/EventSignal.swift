import FoundationEssentials
import Synchronization

/// Tells waiters that events were committed: long-polls and NDJSON streams wait on it instead
/// of polling the database.
public final class EventSignal: Sendable {
    public typealias Wake = @Sendable () -> Void

    private struct Waiter {
        let after: Int64
        let wake: Wake
    }

    private struct State {
        var lastID: Int64 = 0
        var closed = false
        var nextToken: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
    }

    private let state = Mutex(State())

    public init(lastID: Int64 = 0) {
        state.withLock { $0.lastID = lastID }
    }

    /// The id of the newest committed event.
    public var lastID: Int64 { state.withLock { $0.lastID } }

    /// True once the daemon is stopping: waiters are woken and new waits return at once.
    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Called after a commit that appended events up to `lastID`.
    func published(lastID: Int64) {
        let wakes = state.withLock { state -> [Wake] in
            guard lastID > state.lastID else { return [] }
            state.lastID = lastID
            let ready = state.waiters.filter { $0.value.after < lastID }
            for token in ready.keys { state.waiters.removeValue(forKey: token) }
            return ready.values.map(\.wake)
        }
        for wake in wakes { wake() }
    }

    /// Wakes every waiter and makes later waits return at once (daemon shutdown).
    public func close() {
        let wakes = state.withLock { state -> [Wake] in
            state.closed = true
            defer { state.waiters = [:] }
            return state.waiters.values.map(\.wake)
        }
        for wake in wakes { wake() }
    }

    /// Calls `wake` once, when an event with an id above `after` is committed (at once if one
    /// already is, or if closed). Returns a token for `cancel`.
    @discardableResult
    public func notify(after: Int64, _ wake: @escaping Wake) -> UInt64 {
        let (token, now) = state.withLock { state -> (UInt64, Bool) in
            state.nextToken += 1
            if state.closed || state.lastID > after { return (state.nextToken, true) }
            state.waiters[state.nextToken] = Waiter(after: after, wake: wake)
            return (state.nextToken, false)
        }
        if now { wake() }
        return token
    }

    /// Forgets a waiter; returns its wake if it had not fired (the caller may call it).
    @discardableResult
    public func cancel(_ token: UInt64) -> Wake? {
        state.withLock { $0.waiters.removeValue(forKey: token)?.wake }
    }

    /// Waits until an event above `after` is committed, the signal closes, or `timeoutMs`
    /// passes. Returns whether a newer event exists.
    public func wait(after: Int64, timeoutMs: Int) async -> Bool {
        let once = OnceFlag()
        let timer = Mutex<Task<Void, Never>?>(nil)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let token = notify(after: after) {
                if once.claim() {
                    timer.withLock { $0?.cancel() }
                    continuation.resume()
                }
            }
            let sleeper = Task {
                try? await Task.sleep(for: .milliseconds(timeoutMs))
                if once.claim() {
                    self.cancel(token)
                    continuation.resume()
                }
            }
            timer.withLock { $0 = sleeper }
        }
        return lastID > after
    }
}

/// True for exactly one caller of `claim`.
final class OnceFlag: Sendable {
    private let claimed = Atomic<Bool>(false)
    func claim() -> Bool { claimed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged }
}
