import Synchronization

/// A FIFO lock for async code: holds across suspension points, unlike an actor. Serialises
/// changes to the set of services (definitions, config reloads, removals), which are rare
/// and span several awaits. Waiters suspend; no thread blocks.
final class AsyncLock: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var locked = false
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    init() {}

    func lock() async {
        _ = await lock(timeoutMs: nil)
    }

    /// Waits for the lock at most `timeoutMs`; returns false (not holding it) on timeout.
    func lock(timeoutMs: Int?) async -> Bool {
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        let timer: Task<Void, Never>? = timeoutMs.map { timeout in
            Task { [weak self] in
                try? await Task.sleep(for: .milliseconds(timeout))
                guard !Task.isCancelled, let self else { return }
                let waiter = self.state.withLock { state -> Waiter? in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.waiters.remove(at: index)
                }
                waiter?.continuation.resume(returning: false)
            }
        }
        defer { timer?.cancel() }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let acquired = state.withLock { state -> Bool in
                if !state.locked {
                    state.locked = true
                    return true
                }
                state.waiters.append(Waiter(id: id, continuation: continuation))
                return false
            }
            if acquired { continuation.resume(returning: true) }
        }
    }

    /// Hands the lock to the next waiter, if any.
    func unlock() {
        let next = state.withLock { state -> Waiter? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.continuation.resume(returning: true)
    }
}
