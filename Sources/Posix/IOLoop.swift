import CPosixShims
import FoundationEssentials
import Glibc
import Synchronization
import SystemPackage

/// procrefd's one I/O thread: an epoll loop that watches process exits (pidfds), reports
/// descriptors ready to read or write, and fires timers. Async code awaits it instead of
/// blocking a thread of Swift's cooperative pool (two threads on a two-core machine) or
/// sleeping in a loop. Handlers run on the loop's thread: keep them short.
public final class IOLoop: Sendable {
    public typealias ExitHandler = @Sendable (ExitStatus?) -> Void

    /// What a one-shot wait is for.
    public enum Readiness: Sendable {
        case readable
        case writable
        /// The peer closed its end (a socket's EPOLLRDHUP), or the descriptor failed.
        case hangup

        var mode: Int32 {
            switch self {
            case .readable: return 0
            case .writable: return 1
            case .hangup: return 2
            }
        }
    }

    /// A one-shot watch, for `unwatch`.
    public struct WatchID: Sendable {
        let token: UInt64
    }

    /// A scheduled timer, for `cancel`.
    public struct TimerID: Hashable, Sendable {
        let value: UInt64
    }

    private enum Registration {
        /// Reaps (when `reap`) and calls the handler once the process exits.
        case exit(PidFD, reap: Bool, ExitHandler)
        /// Calls the handler once, true when ready, false when its timer fired first.
        case once(fd: Int32, timer: TimerID?, @Sendable (Bool) -> Void)
        /// Calls the handler every time the descriptor is readable.
        case always(fd: Int32, @Sendable () -> Void)
    }

    private struct State {
        var nextToken: UInt64 = 1
        var registrations: [UInt64: Registration] = [:]
        var timers: [UInt64: (deadline: Int64, fire: @Sendable () -> Void)] = [:]
        /// Deadlines in order; entries whose timer is cancelled are skipped when reached.
        var schedule = TimerHeap()
        /// The thread has ended (`shutdown`): nothing registers any more.
        var closed = false
    }

    private let epollFD: Int32
    private let wakeFD: Int32
    private let state = Mutex(State())
    /// Set by `shutdown`: the thread ends after its current pass.
    private let stopping = Atomic<Bool>(false)

    public init(name: String = "procrefd-io") throws(SystemCallError) {
        epollFD = try check("epoll_create1", procref_epoll_create())
        wakeFD = try check("eventfd", procref_eventfd())
        _ = try check("epoll_ctl", procref_epoll_add(epollFD, wakeFD, 0))
        // The thread holds the loop until `shutdown` ends it; then the last owner's release
        // closes the descriptors (`deinit`), so no call on another thread can meet a closed
        // and reused number.
        try DetachedThread.start(name: name) { [self] in self.run() }
    }

    deinit {
        _ = procref_close(epollFD)
        _ = procref_close(wakeFD)
    }

    /// Ends the loop's thread after its current pass. One-shot waits still pending answer
    /// `false` (as if timed out); exit watches and timers are dropped unheard.
    public func shutdown() {
        stopping.store(true, ordering: .releasing)
        wake()
    }

    // MARK: Registrations

    /// Calls `handler` once when `process` exits, with its status when it was our child
    /// (reaped first when `reap`), else nil. One watch per pidfd.
    public func watchExit(of process: PidFD, reap: Bool = true, handler: @escaping ExitHandler) throws(SystemCallError) {
        guard let token = register(.exit(process, reap: reap, handler)) else { throw Self.closedError }
        if procref_epoll_add(epollFD, process.fd, token) != 0 {
            let error = SystemCallError.current("epoll_ctl")
            _ = state.withLock { $0.registrations.removeValue(forKey: token) }
            throw error
        }
    }

    /// Calls `handler` each time `fd` is readable, for as long as the loop runs.
    public func watchReadable(_ fd: Int32, handler: @escaping @Sendable () -> Void) throws(SystemCallError) {
        guard let token = register(.always(fd: fd, handler)) else { throw Self.closedError }
        _ = try check("epoll_ctl", procref_epoll_add(epollFD, fd, token))
    }

    /// Waits until `fd` is ready, at most `timeoutMs` (nil: no limit). False on timeout, or
    /// when the descriptor cannot be watched.
    public func wait(for readiness: Readiness, on fd: Int32, timeoutMs: Int?) async -> Bool {
        await withCheckedContinuation { continuation in
            guard let token = register(.once(fd: fd, timer: nil) { continuation.resume(returning: $0) }) else {
                return continuation.resume(returning: false)
            }
            if let timeoutMs {
                let timer = schedule(afterMs: timeoutMs) { [self] in finishOnce(token, ready: false) }
                let waiting = state.withLock { state -> Bool in
                    guard case let .once(fd, _, resume)? = state.registrations[token] else { return false }
                    state.registrations[token] = .once(fd: fd, timer: timer, resume)
                    return true
                }
                if !waiting { cancel(timer) }
            }
            if procref_epoll_add_once(epollFD, fd, readiness.mode, token) != 0 { finishOnce(token, ready: false) }
        }
    }

    /// Calls `handler` once, when `fd` is ready, unless `unwatch` comes first. nil when the
    /// descriptor cannot be watched. Unwatch before closing `fd`.
    public func watch(_ readiness: Readiness, on fd: Int32, handler: @escaping @Sendable () -> Void) -> WatchID? {
        guard let token = register(.once(fd: fd, timer: nil) { ready in if ready { handler() } }) else { return nil }
        guard procref_epoll_add_once(epollFD, fd, readiness.mode, token) == 0 else {
            finishOnce(token, ready: false)
            return nil
        }
        return WatchID(token: token)
    }

    /// Ends a watch without calling its handler (nothing when it already fired).
    public func unwatch(_ watch: WatchID) { finishOnce(watch.token, ready: false) }

    /// Waits until `process` has exited (a zombie counts), at most `timeoutMs`; false on
    /// timeout. Does not reap it: whoever watches its exit does.
    public func waitExited(_ process: PidFD, timeoutMs: Int?) async -> Bool {
        await wait(for: .readable, on: process.fd, timeoutMs: timeoutMs)
    }

    /// Suspends for `milliseconds` without holding a thread.
    public func sleep(milliseconds: Int) async {
        await withCheckedContinuation { continuation in
            _ = schedule(afterMs: milliseconds) { continuation.resume() }
        }
    }

    // MARK: Timers

    /// Calls `fire` on the loop's thread after `afterMs` (monotonic), unless cancelled.
    @discardableResult
    public func schedule(afterMs: Int, _ fire: @escaping @Sendable () -> Void) -> TimerID {
        let deadline = monotonicMilliseconds() + Int64(max(0, afterMs))
        let (id, earliest) = state.withLock { state -> (UInt64, Bool) in
            let id = state.nextToken
            state.nextToken += 1
            state.timers[id] = (deadline, fire)
            let earliest = state.schedule.peek().map { deadline < $0.deadline } ?? true
            state.schedule.push(deadline: deadline, id: id)
            return (id, earliest)
        }
        if earliest { wake() }
        return TimerID(value: id)
    }

    /// Cancels a timer; false when it already fired (or was cancelled).
    @discardableResult
    public func cancel(_ timer: TimerID) -> Bool {
        state.withLock { $0.timers.removeValue(forKey: timer.value) != nil }
    }

    // MARK: The loop

    /// What registering on a loop that was shut down throws.
    static let closedError = SystemCallError("epoll_ctl (loop shut down)", errno: .badFileDescriptor)

    /// The registration's token; nil once the loop is shut down.
    private func register(_ registration: Registration) -> UInt64? {
        state.withLock { state in
            guard !state.closed else { return nil }
            let token = state.nextToken
            state.nextToken += 1
            state.registrations[token] = registration
            return token
        }
    }

    private func finishOnce(_ token: UInt64, ready: Bool) {
        guard let registration = state.withLock({ $0.registrations.removeValue(forKey: token) }),
            case let .once(fd, timer, resume) = registration
        else { return }
        if let timer { cancel(timer) }
        _ = procref_epoll_remove(epollFD, fd)
        resume(ready)
    }

    private func wake() {
        var one: UInt64 = 1
        _ = procref_write(wakeFD, &one, 8)
    }

    private func run() {
        var tokens = [UInt64](repeating: 0, count: 64)
        while !stopping.load(ordering: .acquiring) {
            let n = tokens.withUnsafeMutableBufferPointer { procref_epoll_wait(epollFD, $0.baseAddress, 64, nextTimeout()) }
            for token in tokens[0..<max(0, Int(n))] { dispatch(token) }
            fireDueTimers()
        }
        let pending = state.withLock { state -> [Registration] in
            defer {
                state = State()
                state.closed = true
            }
            return Array(state.registrations.values)
        }
        for case let .once(_, _, resume) in pending { resume(false) }
    }

    /// Milliseconds until the next timer, -1 without one.
    private func nextTimeout() -> Int32 {
        state.withLock { state in
            while let next = state.schedule.peek(), state.timers[next.id] == nil { _ = state.schedule.pop() }
            guard let next = state.schedule.peek() else { return -1 }
            return Int32(clamping: max(0, next.deadline - monotonicMilliseconds()))
        }
    }

    private func fireDueTimers() {
        let now = monotonicMilliseconds()
        let due = state.withLock { state -> [@Sendable () -> Void] in
            var due: [@Sendable () -> Void] = []
            while let next = state.schedule.peek(), next.deadline <= now {
                _ = state.schedule.pop()
                if let timer = state.timers.removeValue(forKey: next.id) { due.append(timer.fire) }
            }
            return due
        }
        for fire in due { fire() }
    }

    private func dispatch(_ token: UInt64) {
        if token == 0 {
            var count: UInt64 = 0
            _ = read(wakeFD, &count, 8)
            return
        }
        let registration = state.withLock { state -> Registration? in
            guard let registration = state.registrations[token] else { return nil }
            if case .always = registration { return registration }
            return state.registrations.removeValue(forKey: token)
        }
        switch registration {
        case let .exit(process, reap, handler)?:
            _ = procref_epoll_remove(epollFD, process.fd)
            handler(reap ? process.reap() : nil)
        case let .once(fd, timer, resume)?:
            if let timer { cancel(timer) }
            _ = procref_epoll_remove(epollFD, fd)
            resume(true)
        case let .always(_, handler)?:
            handler()
        case nil:
            break
        }
    }
}

/// A binary min-heap of timer deadlines.
struct TimerHeap {
    private var items: [(deadline: Int64, id: UInt64)] = []

    func peek() -> (deadline: Int64, id: UInt64)? { items.first }

    mutating func push(deadline: Int64, id: UInt64) {
        items.append((deadline, id))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].deadline < items[parent].deadline else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (deadline: Int64, id: UInt64)? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count, items[left].deadline < items[smallest].deadline { smallest = left }
            if right < items.count, items[right].deadline < items[smallest].deadline { smallest = right }
            if smallest == parent { return top }
            items.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
