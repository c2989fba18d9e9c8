import AuditStore
import FoundationEssentials
import Glibc
import Logging
import Posix
import Synchronization
import LifecycleModel
import SystemPackage

/// Runs one service's machine: takes events one at a time from a queue, hands each to the
/// `Machine` with the time and the kernel count, and runs the actions it returns.
/// Quick actions (records, a spawn, a timer) run in order before the next event; slow ones
/// (a health probe, a teardown, the strays a spawn must stop first) run as tasks that report
/// back (as events, or as a `Resumption`), so the machine keeps taking events meanwhile.
///
/// State has two owners. What only the loop touches (`LoopState`: the machine, its timers,
/// the slot waits, the launched acquires, the step's records) lives in the loop task and is
/// passed `inout` through a step: no lock. What other threads read or report (`Published`:
/// status's snapshot, the fast path's grant gate, the waiters' continuations, the main
/// process and its exit) is behind one small lock. No lock is held across I/O.
final class ServiceExecutor: Sendable {
    let name: String
    /// The set is replaced only when it was removed from outside (see `replaceSemaphores`).
    private let semaphoreSet: Mutex<SemaphoreSet>
    /// A count read found the set gone and told the Coordinator; cleared by a new set.
    private let setGoneReported = Atomic<Bool>(false)
    let context: LifecycleContext
    /// Launches holders, makes leases and queues their grants.
    let issuer: LeaseIssuer
    /// Every process of the service, the main one's descendants and strays included.
    let processes: ServiceProcesses
    /// Its memory, CPU and process caps.
    let caps: ServiceCaps
    /// Its front door, when it names `front` addresses (see `FrontDoor`).
    let front = Mutex<ServiceFront?>(nil)

    /// What only the loop task touches, between steps and within one.
    struct LoopState {
        var machine: Machine
        var timers: [ServiceTimer: IOLoop.TimerID] = [:]
        /// Acquires until they take a slot or give up.
        var slotWaits: [Waiter: SlotWait] = [:]
        /// Acquires whose holder the loop launched, until they are answered.
        var launched: [Waiter: Launched] = [:]
        /// Events an action reports that are handled in the same step, before publishing.
        var followUps: [MachineEvent] = []
        /// Records queued by this step's actions and not awaited yet; committed before the
        /// step publishes.
        var queuedRecords: [PendingWrite<Void>] = []
        /// Where the log stood when the last start began, for its output on failure.
        var logOffset: Int64 = 0
        /// When the current start began (coarse real time): a pid file older than this is
        /// left from an earlier run.
        var startedAtWallClock = timespec()
        /// OOM kills in the service's memory group when its main process started.
        var oomKillsAtStart = 0
        /// The current start's `procref-logpump`, watched for the end of its output.
        var logPump: PidFD?
        /// Counts `spawn` actions: a spawn resumed after its strays were stopped goes on only
        /// if no other spawn came since.
        var spawnGeneration: UInt64 = 0
    }

    /// What other threads read or report.
    struct Published {
        var snapshot: ServiceSnapshot
        var definition: ServiceDefinition
        /// The fast path's grant gate: until when an acquire may be granted without the loop
        /// (`Machine.grantWindowEnd`, nil: not now). Set with the count read of every event.
        var grantWindowEnd: Int64?
        /// The service has `slots` (a lease's end may free one for the queue).
        var slotted: Bool
        var answers: [Waiter: CheckedContinuation<ServiceAnswer, Never>] = [:]
        /// How each answered acquire settled, for its caller to take.
        var settled: [Waiter: Settled] = [:]
        /// The main process: the one started, or the one its pid_file names, or adopted.
        var main: PidFD?
        /// The main process has exited (its status is `mainExit`, nil when not our child).
        var mainEnded = false
        var mainExit: ExitStatus?
        /// Teardowns waiting for the exit watcher's report of the main process's exit.
        var exitReportWaiters: [Waiter: CheckedContinuation<Void, Never>] = [:]
        /// The last failed start's message for clients, with the service's own last words.
        var startFailure: String?
        /// Bridge leases on what it requires, held while it starts (see `+Requires`).
        var dependencyBridges: [String] = []
    }

    let shared: Mutex<Published>
    private let lastWaiter = Atomic<UInt64>(0)
    /// When the health check last proved (through procfs) that the listener is the service's
    /// own (monotonic ms, -1: never); within a second, a successful connect is enough.
    let ownershipProvenAt = Atomic<Int64>(-1)

    /// Registry facts, changed by the registry (under its own lock), read by status.
    let membership: Mutex<(fromConfig: Bool, pendingRemoval: Bool)>
    /// What the event loop takes: machine events, and acquires whose holder it launches
    /// once the machine gives them a slot, so that launches and the counts after them are in
    /// one order per service.
    enum Input: Sendable {
        case event(MachineEvent)
        case acquire(Waiter, LeaseOrder)
        /// A task the loop started reports back (see `Resumption`).
        case resume(Resumption)
    }

    /// What a task the loop started hands back to it.
    enum Resumption: Sendable {
        /// The strays of a start are stopped, and its `pre_start` passed: spawn now, if that
        /// start still waits.
        case spawnAfterStrays(StartReason, by: Principal, generation: UInt64)
        /// The `pre_start` of a start failed: so does the start, if it still waits.
        case preStartFailed(String, generation: UInt64)
        /// Its capacity group had no room: the start is refused, if it still waits.
        case startRefused(ServiceRefusal, generation: UInt64)
    }

    /// An acquire whose holder the loop launched, until it is answered: its lease, the kernel
    /// count right after the launch, and how long it queued.
    struct Launched {
        let lease: Lease
        let order: LeaseOrder
        let count: KernelCount
        let waitedMs: Int?
    }

    /// How an answered acquire settled at the loop: granted, or its holder handed back to the
    /// caller to give back (the answer was not `ready`), or its launch failed.
    enum Settled: Sendable {
        case granted(Granted)
        case returned(Lease)
        case launchFailed(LifecycleError)
    }

    /// A granted acquire: its lease (not yet in the book), the grant's records queued with the
    /// step that answered `ready` (awaited by the caller), and what the answer says.
    struct Granted: Sendable {
        let lease: Lease
        let write: PendingWrite<Void>
        /// The kernel count right after its holder took its reference.
        let count: KernelCount
        /// This acquire started the service.
        let started: Bool
        /// How long it queued for a slot (nil: it did not queue).
        let waitedMs: Int?
    }

    /// How an acquire ended at the loop. A holder that was launched and not granted has been
    /// given back.
    enum AcquireOutcome: Sendable {
        case granted(Granted)
        /// Its holder could not be launched (it took no slot).
        case launchFailed(LifecycleError)
        case refused(ServiceRefusal)
    }

    private let events: AsyncStream<Input>.Continuation

    init(
        name: String, definition: ServiceDefinition, semaphores: SemaphoreSet, context: LifecycleContext, issuer: LeaseIssuer,
        fromConfig: Bool
    ) {
        self.name = name
        semaphoreSet = Mutex(semaphores)
        self.context = context
        self.issuer = issuer
        processes = ServiceProcesses(scope: context.scope, service: name, cgroupRoot: context.cgroupRoot)
        caps = ServiceCaps(scope: context.scope, service: name, v2Parent: context.cgroupRoot, controllers: context.controllers)
        let policy = ServicePolicy(definition)
        shared = Mutex(Published(snapshot: ServiceSnapshot(definition: definition), definition: definition, slotted: policy.slots != nil))
        membership = Mutex((fromConfig, false))
        let (stream, continuation) = AsyncStream<Input>.makeStream()
        events = continuation
        Task { [weak self] in
            // The loop's own state: only this task touches it, through `inout`.
            var state = LoopState(machine: Machine(policy: policy))
            for await input in stream {
                guard let self else { return }
                switch input {
                case .event(let event): await self.handle(event, &state)
                case let .acquire(waiter, order): await self.take(waiter, order, &state)
                case .resume(let resumption): await self.resume(resumption, &state)
                }
            }
        }
    }

    deinit { events.finish() }

    // MARK: Asking

    /// Queues an event for the machine.
    func send(_ event: MachineEvent) { events.yield(.event(event)) }

    /// Sends the event `make` builds for a new waiter and waits for the machine's answer, at
    /// most `timeoutMs` (then the waiter is abandoned and the answer is `busy`).
    func ask(timeoutMs: Int? = nil, _ make: (Waiter) -> MachineEvent) async -> ServiceAnswer {
        let waiter = newWaiter()
        return await wait(waiter, timeoutMs: timeoutMs, input: .event(make(waiter)))
    }

    func newWaiter() -> Waiter { lastWaiter.add(1, ordering: .relaxed).newValue }

    func wait(_ waiter: Waiter, timeoutMs: Int?, input: Input) async -> ServiceAnswer {
        await withCheckedContinuation { continuation in
            shared.withLock { $0.answers[waiter] = continuation }
            if let timeoutMs {
                context.loop.schedule(afterMs: timeoutMs) { [weak self] in
                    guard let self, let pending = self.shared.withLock({ $0.answers.removeValue(forKey: waiter) }) else { return }
                    self.send(.abandon(waiter))
                    pending.resume(returning: .refused(.busy(self.snapshot.state)))
                }
            }
            events.yield(input)
        }
    }

    /// Whether an acquire may be granted at once, without the loop (see
    /// `Machine.grantsAtOnce`). Asked before a holder takes its reference and again
    /// after, so an event the loop handles in between (a last release that began a stop)
    /// is never missed.
    var grantsAtOnce: Bool {
        guard !membership.withLock({ $0.pendingRemoval }) else { return false }
        return shared.withLock { $0.grantWindowEnd.map { monotonicMilliseconds() < $0 } ?? false }
    }

    /// What status shows; published after each event, once its records are committed.
    var snapshot: ServiceSnapshot { shared.withLock { $0.snapshot } }
    /// The published snapshot's version, without copying it.
    var publishedVersion: UInt64 { shared.withLock { $0.snapshot.version } }

    var definition: ServiceDefinition { shared.withLock { $0.definition } }

    /// A new definition applies at the next start; timing numbers apply at once.
    func redefine(_ definition: ServiceDefinition) {
        shared.withLock { $0.definition = definition }
        send(.definitionChanged(ServicePolicy(definition)))
    }

    /// The main process, while it runs.
    var mainProcess: PidFD? { shared.withLock { $0.mainEnded ? nil : $0.main } }

    /// The last failed start's message, when there is one.
    var startFailure: String? { shared.withLock { $0.startFailure } }

    /// The service's semaphore set: `[0]` counts its references.
    var semaphores: SemaphoreSet { semaphoreSet.withLock { $0 } }

    /// Puts a new set in place of one removed from outside procrefd.
    func replaceSemaphores(_ set: SemaphoreSet) {
        semaphoreSet.withLock { $0 = set }
        front.withLock { $0 }?.renew(semid: set.id)
    }

    /// The report of a gone set was handled: a later one is reported again.
    func rearmSetGoneReport() { setGoneReported.store(false, ordering: .releasing) }

    /// The kernel reference count: the truth about how many leases hold the service. A failed
    /// read is `unreadable`, never 0. A set found gone (EINVAL, EIDRM) is reported to the
    /// Coordinator once, which ends its leases and makes a new one.
    func kernelCount() -> KernelCount {
        do { return .known(try semaphores.count()) } catch {
            if error.errno == .invalidArgument || error.errno == .identifierRemoved,
                setGoneReported.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
            {
                context.semaphoreSetGone.current?(name)
            }
            return .unreadable(errno: error.errno.rawValue)
        }
    }

    // MARK: The event loop

    /// Hands `resumption` to the loop.
    func resume(_ resumption: Resumption) { events.yield(.resume(resumption)) }

    private func resume(_ resumption: Resumption, _ state: inout LoopState) async {
        switch resumption {
        case let .spawnAfterStrays(reason, by, generation):
            guard generation == state.spawnGeneration, state.machine.isSpawning else { return }  // that start is over
            await spawn(reason: reason, actor: by, &state)
            await handle(nil, &state)  // the spawn's follow-ups, then publish
        case let .preStartFailed(reason, generation):
            guard generation == state.spawnGeneration, state.machine.isSpawning else { return }
            shared.withLock { $0.startFailure = reason }
            await handle(.startStepFailed(reason), &state)
        case let .startRefused(refusal, generation):
            guard generation == state.spawnGeneration, state.machine.isSpawning else { return }
            await handle(.startRefused(refusal), &state)
        }
    }

    /// Handles `event` (nil: only the follow-ups queued by an action), then publishes.
    func handle(_ event: MachineEvent?, _ state: inout LoopState) async {
        if case .abandon(let waiter)? = event, let launched = state.launched.removeValue(forKey: waiter) {
            // Its caller stopped waiting after its holder took a reference: give it back.
            let (lease, by) = (launched.lease, launched.order.by)
            Task { await self.issuer.undo(lease, of: self, by: by) }
        }
        var next: MachineEvent? = event ?? (state.followUps.isEmpty ? nil : state.followUps.removeFirst())
        while let event = next {
            // The invariant the fast path relies on: the count is read, and the grant gate set
            // from the machine's new phase, under the lock `grantsAtOnce` reads the gate with.
            // So an acquire granted without the loop took its reference either before this
            // read (and the machine counts it), or after this event (and sees its gate).
            let actions = shared.withLock { shared in
                let actions = state.machine.handle(event, now: monotonicMilliseconds(), count: kernelCount())
                shared.grantWindowEnd = state.machine.grantWindowEnd
                shared.slotted = state.machine.policy.slots != nil
                return actions
            }
            for action in actions { await run(action, &state) }
            next = state.followUps.isEmpty ? nil : state.followUps.removeFirst()
        }
        await publish(&state)
    }

    /// Handles `event` in the current step, after this action, with `record` queued (and
    /// committed before the step publishes, or with a later record of the step).
    func followUp(_ event: MachineEvent, after record: PendingWrite<Void>, _ state: inout LoopState) {
        state.queuedRecords.append(record)
        state.followUps.append(event)
    }

    /// Shows the machine's state, once every record of the step is committed: status never
    /// reports a state whose record is not.
    private func publish(_ state: inout LoopState) async {
        let records = state.queuedRecords
        state.queuedRecords = []
        for record in records {
            do { try await context.committed(record) } catch { context.logger.error("cannot record for \(name): \(error)") }
        }
        let machine = state.machine
        let published = shared.withLock { shared in
            shared.snapshot = shared.snapshot.updated(machine: machine, main: shared.main, definition: shared.definition)
            return shared.snapshot.state
        }
        front.withLock { $0 }?.serviceChanged(to: published)
        context.groups.current?.serviceChanged(self, to: published)
    }

    private func run(_ action: MachineAction, _ state: inout LoopState) async {
        switch action {
        case let .spawn(reason, by): await spawnAction(reason: reason, actor: by, &state)
        case .readPidFile: send(.pidFileRead(adoptFromPidFile(startedAt: state.startedAtWallClock)))
        case .freeze:
            if processes.cgroup?.setFrozen(true) != true { context.logger.error("cannot freeze \(name): cgroup.freeze not writable") }
        case .thaw: processes.cgroup?.setFrozen(false)
        case let .runPostReady(token, by):
            let (argv, timeoutMs) = (definition.postReady ?? [], definition.readyTimeoutMs)
            Task {
                let outcome = await self.runHook(.postReady, argv, timeoutMs: timeoutMs, actor: by)
                self.send(.postReadyFinished(token: token, failure: outcome.failure))
            }
        case let .probe(token, readiness): Task { await self.probe(token: token, readiness: readiness) }
        case let .teardown(reason, by): Task { await self.teardown(reason: reason, actor: by) }
        case let .schedule(timer, afterMs, token):
            state.timers[timer] = context.loop.schedule(afterMs: afterMs) { [weak self] in self?.send(.timerFired(timer, token: token)) }
        case .cancel(let timer):
            if let id = state.timers.removeValue(forKey: timer) { context.loop.cancel(id) }
        case let .answer(waiter, answer):
            // Taken before the commit below, so a timeout cannot answer the waiter `busy`
            // while its grant is being recorded.
            let waiting = shared.withLock { $0.answers.removeValue(forKey: waiter) }
            let slotWait = state.slotWaits.removeValue(forKey: waiter)
            if let launched = state.launched.removeValue(forKey: waiter) {
                settle(waiter, launched, answer: answer, waiting: waiting != nil)
            }
            // A granted acquire's records were queued behind the step's, so they commit with
            // them here (or, in a step with none, when its acquire awaits them).
            await publish(&state)
            slotWait?.stopWatching(on: context.loop)
            waiting?.resume(returning: answer)
        case let .record(note, by): await record(note, actor: by, &state)
        case .launch(let waiter): await launchQueued(waiter, &state)
        case let .queued(waiter, position, waitMs): await queued(waiter, position: position, waitMs: waitMs, &state)
        case let .leftQueue(waiter, position, reason): await leftQueue(waiter, position: position, reason, &state)
        }
    }
}
