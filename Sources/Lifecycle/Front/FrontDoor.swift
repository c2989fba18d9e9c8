import AuditStore
import CPosixShims
import Dispatch
import FoundationEssentials
import LifecycleModel
import Logging
import Posix
import Synchronization

/// A service's front door: procrefd's own copies of the listening sockets, and the
/// `procref-door` process that accepts on them and forwards to the service's upstream.
///
/// The door takes one kernel reference per open connection (its own SEM_UNDO), so the
/// service's count is leases plus connections, and the machine needs nothing new: the door
/// asking for a start is an acquire, its last connection closing is a last reference gone.
/// procrefd keeps the listening sockets, so a door that dies is replaced with the backlog
/// kept: no client sees a refusal meanwhile. A door outlives its procrefd and comes back to
/// the next one through the rendezvous socket (`DoorRendezvous`), bringing its listening
/// sockets and its open connections.
final class FrontDoor: ServiceFront {
    let service: String
    let context: LifecycleContext
    private let executable: String
    /// Delay before a door that died is replaced (a door failing at once must not spin).
    static let respawnDelayMs = 200
    /// How long a door left by the procrefd before this one has to come back (it tries
    /// every 250 ms) before it is killed and replaced.
    static let adoptionWaitMs = 3_000

    struct State {
        var listeners: FrontListeners
        var upstream: String
        var maxPending: Int
        var pendingTimeoutMs: Int
        /// Each connection's open and close is recorded (`front_audit = "connections"`).
        let auditConnections: Bool
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
        /// Bytes the running door reported forwarded so far (toward upstream, toward clients).
        var bytes = (up: 0, down: 0)
        /// A door left by the procrefd before this one runs, and holds the addresses: it is
        /// waited for, not replaced.
        var awaitingAdoption = false
        /// The door came back: addresses it did not bring are bound at its first count.
        var adopted = false
        var closed = false
    }
    let state: Mutex<State>

    /// Binds every front address of `definition` (nothing is kept when one fails) and
    /// reuses the listeners of `previous` for addresses both have. When a door that an earlier
    /// procrefd started still runs for `semid`, nothing is bound: it holds the addresses, and
    /// `open` waits for it to come back.
    init(
        service: String, definition: ServiceDefinition, semid: Int32, context: LifecycleContext, executable: String,
        reusing previous: ServiceFront? = nil
    ) throws(LifecycleError) {
        self.service = service
        self.context = context
        self.executable = executable
        var state = State(
            listeners: FrontListeners(definition.frontAddresses), upstream: definition.upstream ?? "",
            maxPending: definition.frontMaxPending ?? ServiceDefinition.defaultFrontMaxPending,
            pendingTimeoutMs: definition.readyTimeoutMs, auditConnections: definition.auditsConnections, semid: semid)
        if previous == nil, !Self.leftBehind(semid: semid).isEmpty {
            state.awaitingAdoption = true
        } else {
            if let previous { state.listeners.share(previous.listeners) }
            try state.listeners.bindMissing()
        }
        self.state = Mutex(state)
    }

    /// The listening sockets, for a front that replaces this one to share.
    var listeners: FrontListeners { state.withLock { $0.listeners } }

    /// What the door is started with: a redefinition that changes none of it keeps the door.
    struct Settings: Equatable {
        let front: [String]?
        let upstream: String?
        let maxPending: Int?
        let pendingTimeoutMs: Int
        let mode: String?
        let audit: String?
        init(_ definition: ServiceDefinition) {
            (front, upstream, maxPending, pendingTimeoutMs) = (definition.front, definition.upstream, definition.frontMaxPending, definition.readyTimeoutMs)
            (mode, audit) = (definition.frontMode, definition.frontAudit)
        }
    }

    /// The addresses clients connect to.
    var addresses: [String] { state.withLock { $0.listeners.descriptions } }

    /// Open connections, as the door last reported them.
    var connections: Int? { state.withLock { $0.connections } }

    /// Starts the door for `owner`, or waits for the one an earlier procrefd left to come
    /// back. Other doors left on the set (finishing their open connections, accepting
    /// nothing) are watched: their exit takes references away.
    func open(for owner: ServiceExecutor) {
        let (semid, awaiting) = state.withLock { state in
            state.owner = owner
            return (state.semid, state.awaitingAdoption)
        }
        let leftBehind = Self.leftBehind(semid: semid)
        for identity in leftBehind {
            guard let process = try? PidFD(identity: identity) else { continue }
            Self.watchForeignExit(of: process, notifying: owner, context: context)
        }
        guard awaiting else { return spawn() }
        _ = context.loop.schedule(afterMs: Self.adoptionWaitMs) { [weak self] in
            guard let self, state.withLock({ $0.awaitingAdoption && !$0.closed }) else { return }
            context.logger.warning("the front door of \(service) left by the last procrefd did not come back; it is replaced")
            for identity in leftBehind { try? PidFD(identity: identity).signal(SIGKILL) }
            bindAndSpawn()
        }
    }

    /// Binds the addresses (tried again each second while one is held) and starts a door.
    private func bindAndSpawn() {
        let bound = state.withLock { state -> Result<Bool, LifecycleError> in
            guard !state.closed else { return .success(false) }
            state.awaitingAdoption = false
            do throws(LifecycleError) { try state.listeners.bindMissing() } catch { return .failure(error) }
            return .success(true)
        }
        switch bound {
        case .success(let open): if open { spawn() }
        case .failure(let error):
            context.logger.error("front door of \(service): \(error); trying again in a second")
            _ = context.loop.schedule(afterMs: 1_000) { [weak self] in self?.bindAndSpawn() }
        }
    }

    private func spawn() {
        let pair: SocketPair
        do { pair = try SocketPair(messages: true) } catch { return context.logger.error("front door of \(service): \(error)") }
        let rendezvous = context.settings.current.doorRendezvous ?? "-"
        let (arguments, listeners) = state.withLock { state in
            ([executable, String(state.semid), state.upstream, String(state.maxPending), String(state.pendingTimeoutMs), rendezvous, service,
              state.auditConnections ? "connections" : "transitions"],
             Array(state.listeners.sockets))
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
        for (address, fd) in listeners { Self.give(listener: fd, at: address, on: control) }
        let stale = state.withLock { state -> Bool in
            guard !state.closed else { return true }
            Self.begin(&state, process: process, control: control)
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
        serve()
    }

    /// Passes a listening socket to a door, named as the definition names its address.
    static func give(listener fd: Int32, at address: FrontAddress, on control: Int32) {
        _ = Descriptor.send(control, Array("\(PROCREF_DOOR_LISTEN) \(address)".utf8), passing: fd)
    }

    /// A door is this procrefd's now: what it reports is fresh.
    static func begin(_ state: inout State, process: PidFD, control: Int32) {
        (state.process, state.control, state.connections, state.accepted, state.toldReady, state.starting) = (process, control, 0, 0, false, false)
        state.bytes = (0, 0)
    }

    /// Reads the door's messages, and lets new connections to a running service straight
    /// through.
    func serve() {
        armWatch()
        if let owner = state.withLock({ $0.owner }), owner.snapshot.state == .ready { tell(PROCREF_DOOR_READY) }
    }

    private func armWatch() {
        let control = state.withLock { $0.closed ? -1 : $0.control }
        guard control >= 0 else { return }
        let watch = context.loop.watch(.readable, on: control) { [weak self] in self?.readControl(control) }
        state.withLock { $0.watch = watch }
    }

    private func readControl(_ control: Int32) {
        while true {
            switch MessageSocket.receive(control) {
            case .ended: return  // the door is gone: its exit is handled
            case .none:
                guard state.withLock({ $0.control == control }) else { return }
                return armWatch()
            case .message(let bytes, let passed):
                let message = String(decoding: bytes, as: UTF8.self)
                if message.hasPrefix(PROCREF_DOOR_LISTEN + " ") {
                    takeBack(listener: passed, key: String(message.dropFirst(PROCREF_DOOR_LISTEN.utf8.count + 1)))
                } else {
                    Descriptor.close(passed)
                    handle(message)
                }
            }
        }
    }

    private func handle(_ message: String) {
        if message == PROCREF_DOOR_NEED { return startForWaiting() }
        let fields = message.split(separator: " ")
        if let kind = fields.first, kind == PROCREF_DOOR_OPENED || kind == PROCREF_DOOR_CLOSED { return recordConnection(fields) }
        guard fields.count == 6, fields[0] == PROCREF_DOOR_COUNT, let count = Int(fields[1]), let accepted = Int(fields[2]),
            let pending = Int(fields[3]), let up = Int(fields[4]), let down = Int(fields[5])
        else { return }
        let (before, new, moved, owner, adopted) = state.withLock { state in
            defer {
                (state.connections, state.accepted, state.bytes, state.adopted) = (count, accepted, (up, down), false)
            }
            return (state.connections, accepted - state.accepted, (up: up - state.bytes.up, down: down - state.bytes.down), state.owner, state.adopted)
        }
        if adopted { completeAdoption() }
        Telemetry.frontAccepted(service: service, new: new, pending: pending)
        Telemetry.frontForwarded(service: service, up: moved.up, down: moved.down)
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

    /// `opened ID PEER` or `closed ID UP DOWN MS`, from a door auditing connections.
    private func recordConnection(_ fields: [Substring]) {
        guard let id = fields.count > 1 ? Int64(fields[1]) : nil else { return }
        let kind: EventKind
        var detail: [String: DetailValue] = ["connection": .int(id)]
        if fields[0] == PROCREF_DOOR_OPENED, fields.count == 3 {
            kind = .frontConnectionOpened
            detail["peer"] = .string(String(fields[2]))
        } else if fields.count == 5, let up = Int64(fields[2]), let down = Int64(fields[3]), let ms = Int64(fields[4]) {
            kind = .frontConnectionClosed
            (detail["bytes_up"], detail["bytes_down"], detail["duration_ms"]) = (.int(up), .int(down), .int(ms))
        } else {
            return
        }
        let (service, pid) = (service, state.withLock { $0.process?.pid })
        Task { await context.recordLogged(NewEvent(kind, service: service, pid: pid, actor: Principal.procrefd, detail: detail)) }
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
    func exited(_ process: PidFD) {
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
            bindAndSpawn()
        }
    }

    /// Lets the door go on without this procrefd (hand-off): it keeps its listening sockets
    /// and connections, and comes back to the next procrefd's rendezvous.
    func release() {
        let (_, control, listeners) = detach()
        Descriptor.close(control)
        FrontListeners.close(listeners, unlink: false)
    }

    /// Marks the door closed and takes what procrefd holds of it: the process, the control
    /// socket (no longer watched) and the listening sockets.
    private func detach() -> (PidFD?, Int32, [FrontAddress: Int32]) {
        let (process, control, watch, listeners) = state.withLock { state -> (PidFD?, Int32, IOLoop.WatchID?, [FrontAddress: Int32]) in
            state.closed = true
            defer { (state.control, state.watch) = (-1, nil) }
            return (state.process, state.control, state.watch, state.listeners.takeAll())
        }
        if let watch { context.loop.unwatch(watch) }
        return (process, control, listeners)
    }

    /// Ends the door. `stopConnections`: its open connections end with it and its Unix
    /// socket paths are removed (`unlink`; drain, removal); otherwise it is told to retire:
    /// it finishes them itself, accepting nothing new (a new door taking over).
    func close(stopConnections: Bool, unlink: Bool) {
        let (process, control, listeners) = detach()
        if stopConnections { try? process?.signal(SIGTERM) } else if control >= 0 { _ = Descriptor.send(control, Array(PROCREF_DOOR_RETIRE.utf8), passing: -1) }
        Descriptor.close(control)
        FrontListeners.close(listeners, unlink: stopConnections && unlink)
    }
}
