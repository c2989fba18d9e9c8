import AuditStore
import FoundationEssentials
import LifecycleModel
import Logging
import Posix
import Synchronization

/// Socket activation (`front_mode = "activate"`), as systemd does it: procrefd binds the front
/// addresses and, while the service is stopped, watches them. A waiting connection starts the
/// service, which gets the listening sockets as descriptors 3, 4, ... (`LISTEN_FDS`,
/// `LISTEN_PID`, `LISTEN_FDNAMES`) and accepts on them itself, the waiting connection
/// included.
///
/// What this mode cannot know: nothing sits between client and service, so connections are
/// not counted. A start it makes is an acquire that leaves at once: the service lingers
/// (`linger_ms`) and stops unless a lease holds it, whatever connections are open.
final class SocketActivation: ServiceFront {
    let service: String
    private let context: LifecycleContext
    /// After a start that failed, the connections waiting are closed and the sockets watched
    /// again only after this long (a start that keeps failing must not spin).
    static let retryAfterFailureMs = 1_000

    private struct State {
        var listeners: FrontListeners
        weak var owner: ServiceExecutor?
        var watches: [IOLoop.WatchID] = []
        var starting = false
        var closed = false
    }
    private let state: Mutex<State>
    private let readyTimeoutMs: Int

    /// Binds every front address (sharing the sockets of `previous` where the addresses are
    /// the same); nothing is kept when one fails.
    init(service: String, definition: ServiceDefinition, context: LifecycleContext, reusing previous: ServiceFront?) throws(LifecycleError) {
        (self.service, self.context, readyTimeoutMs) = (service, context, definition.readyTimeoutMs)
        var listeners = FrontListeners(definition.frontAddresses)
        if let previous { listeners.share(previous.listeners) }
        try listeners.bindMissing()
        state = Mutex(State(listeners: listeners))
    }

    var addresses: [String] { state.withLock { $0.listeners.descriptions } }
    var connections: Int? { nil }
    var listeners: FrontListeners { state.withLock { $0.listeners } }

    /// The sockets the service's main process gets, in the definition's order, each named
    /// after the service (`LISTEN_FDNAMES`, as a socket unit's name would be).
    var activationSockets: (sockets: [Int32], names: [String]) {
        state.withLock { state in
            let sockets = state.listeners.addresses.compactMap { state.listeners.sockets[$0] }
            return (sockets, sockets.map { _ in service })
        }
    }

    func open(for owner: ServiceExecutor) {
        state.withLock { $0.owner = owner }
        serviceChanged(to: owner.snapshot.state)
    }

    /// Stopped (or failed): procrefd watches the sockets. Otherwise the service accepts on
    /// them, and procrefd stays out of its way.
    func serviceChanged(to serviceState: ServiceState) {
        if serviceState == .stopped || serviceState == .failed { watchAll() } else { unwatchAll() }
    }

    private func watchAll() {
        let sockets = state.withLock { state -> [Int32] in
            guard !state.closed, !state.starting, state.watches.isEmpty else { return [] }
            return Array(state.listeners.sockets.values)
        }
        let watches = sockets.compactMap { fd in context.loop.watch(.readable, on: fd) { [weak self] in self?.connectionWaiting() } }
        let stale = state.withLock { state -> [IOLoop.WatchID] in
            guard !state.closed, !state.starting, state.watches.isEmpty else { return watches }
            state.watches = watches
            return []
        }
        for watch in stale { context.loop.unwatch(watch) }
    }

    private func unwatchAll() {
        let watches = state.withLock { state in
            defer { state.watches = [] }
            return state.watches
        }
        for watch in watches { context.loop.unwatch(watch) }
    }

    /// A connection waits on a stopped service: it is started as an acquire by procrefd
    /// would, and left to linger once ready.
    private func connectionWaiting() {
        let owner = state.withLock { state -> ServiceExecutor? in
            guard !state.closed, !state.starting, let owner = state.owner else { return nil }
            state.starting = true
            return owner
        }
        unwatchAll()
        guard let owner else { return }
        let (service, context, timeoutMs) = (service, context, readyTimeoutMs)
        Task {
            let answer = await owner.ask(timeoutMs: timeoutMs) { .acquire($0, by: Principal.procrefd) }
            state.withLock { $0.starting = false }
            guard case .ready(let started) = answer else {
                context.logger.warning("socket activation of \(service): the start failed, waiting connections are closed: \(answer)")
                closeWaiting()
                _ = context.loop.schedule(afterMs: Self.retryAfterFailureMs) { [weak self, weak owner] in
                    guard let self, let owner else { return }
                    serviceChanged(to: owner.snapshot.state)
                }
                return
            }
            if started {
                await context.recordLogged(NewEvent(.frontFirstConnection, service: service, actor: Principal.procrefd, detail: ["mode": "activate"]))
            }
            // Nothing holds the service for its connections: it lingers unless a lease does.
            owner.send(.lastReferenceGone(reason: "front_idle", by: Principal.procrefd, nil))
        }
    }

    /// Accepts and closes what waits in the backlogs: a client is told at once, rather than
    /// left waiting on a service that cannot start.
    private func closeWaiting() {
        for fd in state.withLock({ Array($0.listeners.sockets.values) }) {
            while let client = MessageSocket.accept(fd) { Descriptor.close(client) }
        }
    }

    /// The set does not matter here: nothing but leases counts on it.
    func renew(semid: Int32) {}

    func release() { close(stopConnections: false, unlink: false) }

    /// procrefd's sockets close; a running service keeps its own copies until it stops.
    func close(stopConnections: Bool, unlink: Bool) {
        let sockets = state.withLock { state in
            state.closed = true
            return state.listeners.takeAll()
        }
        unwatchAll()
        FrontListeners.close(sockets, unlink: stopConnections && unlink)
    }
}
