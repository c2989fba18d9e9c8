import AuditStore
import CPosixShims
import Foundation
import LifecycleModel
import Posix
import Synchronization

/// A service's front door: procrefd's own copies of the listening sockets, and the
/// `procref-door` process that accepts on them and forwards to the service's upstream.
///
/// The door takes one kernel reference per open connection (its own SEM_UNDO), so the
/// service's count is leases plus connections, and the machine needs nothing new: the door
/// asking for a start is an acquire, its last connection closing is a last reference gone.
/// procrefd keeps the listening sockets, so a door that dies is replaced with the backlog
/// kept: no client sees a refusal meanwhile.
final class FrontDoor: Sendable {
    let service: String
    private let context: LifecycleContext
    private let executable: String
    /// Delay before a door that died is replaced (a door failing at once must not spin).
    static let respawnDelayMs = 200

    private struct State {
        var listeners: [FrontAddress: Int32]
        /// Each front address as bound (its port when the definition says 0).
        var bound: [FrontAddress: FrontAddress]
        var upstream: String
        var maxPending: Int
        var pendingTimeoutMs: Int
        var semid: Int32
        weak var owner: ServiceExecutor?
        var process: PidFD?
        var control: Int32 = -1
        var watch: IOLoop.WatchID?
        /// Open connections, as the door last reported them.
        var connections = 0
        /// Connections the running door reported accepted so far.
        var accepted = 0
        /// An acquire for waiting connections is under way.
        var starting = false
        /// The door was told the service is ready, and not told otherwise since.
        var toldReady = false
        var closed = false
    }
    private let state: Mutex<State>

    /// Binds every front address of `definition` (nothing is kept when one fails) and
    /// reuses the listeners of `previous` for addresses both have.
    init(
        service: String, definition: ServiceDefinition, semid: Int32, context: LifecycleContext, executable: String,
        reusing previous: FrontDoor? = nil
    ) throws(LifecycleError) {
        self.service = service
        self.context = context
        self.executable = executable
        let (kept, keptBound) = previous?.state.withLock { ($0.listeners, $0.bound) } ?? ([:], [:])
        var listeners: [FrontAddress: Int32] = [:], bound: [FrontAddress: FrontAddress] = [:]
        for address in definition.frontAddresses {
            if let fd = kept[address] {
                listeners[address] = procref_dup_cloexec(fd)
                bound[address] = keptBound[address] ?? address
                continue
            }
            do { (listeners[address], bound[address]) = try address.listen() } catch {
                for fd in listeners.values { Descriptor.close(fd) }
                throw error
            }
        }
        state = Mutex(State(
            listeners: listeners, bound: bound, upstream: definition.upstream ?? "", maxPending: definition.frontMaxPending ?? ServiceDefinition.defaultFrontMaxPending,
            pendingTimeoutMs: definition.readyTimeoutMs, semid: semid))
    }

    /// What the door is started with: a redefinition that changes none of it keeps the door.
    struct Settings: Equatable {
        let front: [String]?
        let upstream: String?
        let maxPending: Int?
        let pendingTimeoutMs: Int
        init(_ definition: ServiceDefinition) {
            (front, upstream, maxPending, pendingTimeoutMs) = (definition.front, definition.upstream, definition.frontMaxPending, definition.readyTimeoutMs)
        }
    }

    /// The addresses clients connect to.
    var addresses: [String] { state.withLock { $0.bound.values.map(\.description).sorted() } }

    /// Open connections, as the door last reported them.
    var connections: Int { state.withLock { $0.connections } }

    /// Starts the door for `owner`. Doors an earlier procrefd left (finishing their open
    /// connections, accepting nothing) are watched: their exit takes references away.
    func open(for owner: ServiceExecutor) {
        let semid = state.withLock { state in
            state.owner = owner
            return String(state.semid)
        }
        let leftBehind = ProcessScan.now().running(as: geteuid()) { $0.count == 5 && $0[0].hasSuffix("/procref-door") && $0[1] == semid }
        for identity in leftBehind {
            guard let process = try? PidFD(identity: identity) else { continue }
            try? context.loop.watchExit(of: process, reap: false) { [weak owner] _ in
                owner?.send(.lastReferenceGone(reason: "front_exited", by: Principal.procrefd, nil))
            }
        }
        spawn()
    }

    private func spawn() {
        let pair: SocketPair
        do { pair = try SocketPair(messages: true) } catch { return context.logger.error("front door of \(service): \(error)") }
        let (arguments, listeners) = state.withLock { state in
            ([executable, String(state.semid), state.upstream, String(state.maxPending), String(state.pendingTimeoutMs)], Array(state.listeners.values))
        }
        var options = Spawner.Options()
        options.newSession = true
        options.passedDescriptor = pair.theirs.raw
        let process: PidFD
        do { process = try PidFD(child: try context.spawner.spawn(arguments: arguments, environment: [:], options: options)) } catch {
            context.logger.error("cannot start the front door of \(service) (\(executable)): \(error)")
            return respawnLater()
        }
        let control = pair.ours.take()
        for fd in listeners { _ = Descriptor.send(control, Array(PROCREF_DOOR_LISTEN.utf8), passing: fd) }
        let stale = state.withLock { state -> Bool in
            guard !state.closed else { return true }
            (state.process, state.control, state.connections, state.accepted, state.toldReady, state.starting) = (process, control, 0, 0, false, false)
            return false
        }
        if stale {
            try? process.signal(SIGTERM)
            Descriptor.close(control)
            return
        }
        do { try context.loop.watchExit(of: process) { [weak self] _ in self?.exited(process) } } catch {
            try? process.signal(SIGKILL)
        }
        armWatch()
        // A running service: new connections go straight through.
        if let owner = state.withLock({ $0.owner }), owner.snapshot.state == .ready { tell(PROCREF_DOOR_READY) }
    }

    private func armWatch() {
        let control = state.withLock { $0.closed ? -1 : $0.control }
        guard control >= 0 else { return }
        let watch = context.loop.watch(.readable, on: control) { [weak self] in self?.readControl(control) }
        state.withLock { $0.watch = watch }
    }

    private func readControl(_ control: Int32) {
        while let message = Descriptor.receiveDatagram(control, timeoutMs: 0, limit: 64) {
            guard !message.isEmpty else { return }  // the door is gone: its exit is handled
            handle(String(decoding: message, as: UTF8.self))
        }
        guard state.withLock({ $0.control == control }) else { return }
        armWatch()
    }

    private func handle(_ message: String) {
        if message == PROCREF_DOOR_NEED { return startForWaiting() }
        let fields = message.split(separator: " ")
        guard fields.count == 4, fields[0] == PROCREF_DOOR_COUNT, let count = Int(fields[1]), let accepted = Int(fields[2]),
            let pending = Int(fields[3])
        else { return }
        let (before, new, owner) = state.withLock { state in
            defer { (state.connections, state.accepted) = (count, accepted) }
            return (state.connections, accepted - state.accepted, state.owner)
        }
        Telemetry.frontAccepted(service: service, new: new, pending: pending)
        // A first connection counts as an acquire: it ends a linger, and a stale health check
        // is run again.
        if before == 0, count > 0 { return startForWaiting() }
        guard count == 0, before > 0, let owner else { return }
        // Recorded when it leaves the service unreferenced, once per linger (read before the
        // machine hears it and starts one).
        let lingering = owner.snapshot.lingerUntil != nil
        owner.send(.lastReferenceGone(reason: "front_idle", by: Principal.procrefd, nil))
        if owner.kernelCount().isZero, !lingering { record(.frontIdle) }
    }

    /// Connections wait: the service is asked for as an acquire would, and the door hears
    /// the answer.
    private func startForWaiting() {
        let ask = state.withLock { state -> (ServiceExecutor, Int)? in
            guard !state.starting, !state.closed, let owner = state.owner else { return nil }
            state.starting = true
            return (owner, state.pendingTimeoutMs)
        }
        guard let (owner, timeoutMs) = ask else { return }
        let begun = DispatchTime.now().uptimeNanoseconds
        Task {
            let answer = await owner.ask(timeoutMs: timeoutMs) { .acquire($0, by: Principal.procrefd) }
            Telemetry.frontStartWaited(service: service, nanoseconds: DispatchTime.now().uptimeNanoseconds - begun)
            let left = state.withLock { state -> Int in
                state.starting = false
                return state.connections
            }
            guard case .ready(let started) = answer else {
                context.logger.warning("front door of \(service): connections waiting for a start are closed: \(answer)")
                return tell(PROCREF_DOOR_FAILED)
            }
            if started { record(.frontFirstConnection) }
            tell(PROCREF_DOOR_READY)
            // Every waiting connection may have left during the start: nothing else would
            // tell the machine.
            if left == 0 { owner.send(.lastReferenceGone(reason: "front_idle", by: Principal.procrefd, nil)) }
        }
    }

    /// The service's state changed (published): a door told `ready` hears when that ends.
    func serviceChanged(to serviceState: ServiceState) {
        let stopped = state.withLock { state -> Bool in
            guard state.toldReady, serviceState != .ready, serviceState != .unhealthy else { return false }
            return true
        }
        if stopped { tell(PROCREF_DOOR_STOPPED) }
    }

    private func tell(_ message: String) {
        let control = state.withLock { state -> Int32 in
            guard !state.closed else { return -1 }
            if message == PROCREF_DOOR_READY { state.toldReady = true }
            if message == PROCREF_DOOR_STOPPED || message == PROCREF_DOOR_FAILED { state.toldReady = false }
            return state.control
        }
        guard control >= 0 else { return }
        _ = Descriptor.send(control, Array(message.utf8), passing: -1)
    }

    private func record(_ kind: EventKind) {
        let (count, owner) = state.withLock { ($0.connections, $0.owner) }
        let (service, kernel) = (service, owner?.kernelCount().value)
        Task {
            await context.writeLogged { tx in
                var detail: [String: DetailValue] = ["connections": .int(Int64(count))]
                if let kernel { detail["count"] = .int(Int64(kernel)) }
                try tx.append(NewEvent(kind, service: service, actor: Principal.procrefd, detail: detail))
            }
        }
    }

    /// The door died: the kernel took its connections' references back with it. The machine
    /// hears a last reference gone (it reads the count), and a new door takes the listeners.
    /// A closed door's exit (its last connection ended) is told the machine the same way.
    private func exited(_ process: PidFD) {
        let (closed, owner, control, watch) = state.withLock { state -> (Bool, ServiceExecutor?, Int32, IOLoop.WatchID?) in
            guard state.process === process else { return (true, state.owner, -1, nil) }
            let old = (state.closed, state.owner, state.control, state.watch)
            (state.process, state.control, state.watch, state.connections, state.toldReady) = (nil, -1, nil, 0, false)
            return old
        }
        if let watch { context.loop.unwatch(watch) }
        Descriptor.close(control)
        owner?.send(.lastReferenceGone(reason: "front_exited", by: Principal.procrefd, nil))
        guard !closed else { return }
        context.logger.warning("front door of \(service) exited; a new one takes its listening sockets")
        respawnLater()
    }

    /// The service's semaphore set was replaced: a new door counts on the new one (the old
    /// door's connections were counted on a set that is gone).
    func renew(semid: Int32) {
        let process = state.withLock { state in
            state.semid = semid
            return state.process
        }
        try? process?.signal(SIGKILL)
    }

    private func respawnLater() {
        _ = context.loop.schedule(afterMs: Self.respawnDelayMs) { [weak self] in
            guard let self, !state.withLock({ $0.closed }) else { return }
            spawn()
        }
    }

    /// Ends the door. `stopConnections`: its open connections end with it and its Unix
    /// socket paths are removed (`unlink`; drain, removal); otherwise it finishes them
    /// itself, accepting nothing new (hand-off, or a new door taking over).
    func close(stopConnections: Bool, unlink: Bool = true) {
        let (process, control, watch, listeners) = state.withLock { state -> (PidFD?, Int32, IOLoop.WatchID?, [FrontAddress: Int32]) in
            state.closed = true
            defer { (state.control, state.watch, state.listeners) = (-1, nil, [:]) }
            return (state.process, state.control, state.watch, state.listeners)
        }
        if let watch { context.loop.unwatch(watch) }
        if stopConnections { try? process?.signal(SIGTERM) }
        Descriptor.close(control)
        for (address, fd) in listeners {
            Descriptor.close(fd)
            if stopConnections, unlink, case .unix(let path) = address { Glibc.unlink(path) }
        }
    }
}
