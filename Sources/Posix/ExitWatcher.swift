import CPosixShims
import Foundation
import Synchronization

/// Watches many processes through their pidfds on one epoll thread and calls a handler once
/// when each exits (reaping it first when it is our child).
public final class ExitWatcher: Sendable {
    public typealias Handler = @Sendable (ExitStatus?) -> Void

    private struct Entry {
        let process: PidFD
        let handler: Handler
    }

    private let epollFD: Int32
    private let entries = Mutex<(next: UInt64, byToken: [UInt64: Entry])>((1, [:]))

    public init() throws(SystemCallError) {
        epollFD = try check("epoll_create1", procref_epoll_create())
        let thread = Thread { [self] in self.run() }
        thread.name = "procrefd-exit-watcher"
        thread.start()
    }

    /// Calls `handler` (on the watcher thread; keep it short) when `process` exits. The
    /// status is nil when the process was not our child (nothing to reap).
    public func watch(_ process: PidFD, handler: @escaping Handler) throws(SystemCallError) {
        let token = entries.withLock { state in
            let token = state.next
            state.next += 1
            state.byToken[token] = Entry(process: process, handler: handler)
            return token
        }
        if procref_epoll_add(epollFD, process.fd, token) != 0 {
            let error = SystemCallError.current("epoll_ctl")
            _ = entries.withLock { $0.byToken.removeValue(forKey: token) }
            throw error
        }
    }

    /// Number of processes being watched.
    public var watchedCount: Int { entries.withLock { $0.byToken.count } }

    private func run() {
        var tokens = [UInt64](repeating: 0, count: 64)
        while true {
            let n = tokens.withUnsafeMutableBufferPointer { procref_epoll_wait(epollFD, $0.baseAddress, 64, -1) }
            guard n > 0 else { continue }
            for token in tokens[0..<Int(n)] {
                guard let entry = entries.withLock({ $0.byToken.removeValue(forKey: token) }) else { continue }
                _ = procref_epoll_remove(epollFD, entry.process.fd)
                entry.handler(entry.process.reap())
            }
        }
    }
}
