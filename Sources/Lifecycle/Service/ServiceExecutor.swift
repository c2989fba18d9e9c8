import AuditStore
import Foundation
import Posix
import Synchronization
import LifecycleModel

/// Runs one service's machine: takes events one at a time from a queue, hands each to the
/// `Machine` with the time and the kernel count, and runs the actions it returns.
/// Quick actions (records, a spawn, a timer) run in order before the next event; slow ones
/// (a health probe, a teardown) run as tasks that report back as events, so the machine
/// keeps taking events meanwhile. No lock is held across I/O: the machine's state is only
/// touched inside the event loop, and what status shows is published after each event's
/// records are committed.
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

    /// What the event loop owns. Only the loop task changes `machine`.
    struct Owned {
        var machine: Machine
        var definition: ServiceDefinition
        /// The main process: the one started, or the one its pid_file names, or adopted.
        var main: PidFD?
        /// The main process has exited (its status is `mainExit`, nil when not our child).
        var mainEnded = false
        /// The current start's `procref-logpump`, watched for the end of its output.
        var logPump: PidFD?
        var mainExit: ExitStatus?
        /// Teardowns waiting for the exit watcher's report of the main process's exit.
        var exitReportWaiters: [Waiter: CheckedContinuation<Void, Never>] = [:]
        var timers: [ServiceTimer: IOLoop.TimerID] = [:]
        var answers: [Waiter: CheckedContinuation<ServiceAnswer, Never>] = [:]
        /// Acquires of a slotted service until they take a slot or give up.
        var slotWaits: [Waiter: SlotWait] = [:]
        /// Acquires whose holder the loop launched, until they are answered.
        var launched: [Waiter: Launched] = [:]
        var launchFailures: [Waiter: LifecycleError] = [:]
        var nextWaiter: Waiter = 0
        /// Events an action reports that are handled in the same step, before publishing.
        var followUps: [MachineEvent] = []
        /// Records queued by this step's actions and not awaited yet; committed before the
        /// step publishes.
        var queuedRecords: [PendingWrite<Void>] = []
        /// Where the log stood when the last start began, for its output on failure.
        var logOffset: Int64 = 0
        /// The last failed start's message for clients, with the service's own last words.
        var startFailure: String?
        /// When the current start began (coarse real time): a pid file older than this is
        /// left from an earlier run.
        var startedAtWallClock = timespec()
        /// OOM kills in the service's memory group when its main process started.
        var oomKillsAtStart = 0
        /// When the health check last proved (through procfs) that the listener is the
        /// service's own; within a second, a successful connect is enough.
        var ownershipProvenAt: Int64?
        var published = ServiceSnapshot()
    }

    let owned: Mutex<Owned>
    /// Registry facts, changed by the registry (under its own lock), read by status.
    let membership: Mutex<(fromConfig: Bool, pendingRemoval: Bool)>
    /// What the event loop takes: machine events, and acquires whose holder it launches
    /// once the machine gives them a slot, so that launches and the counts after them are in
    /// one order per service.
    enum Input: Sendable {
        case event(MachineEvent)
        case acquire(Waiter, LeaseOrder)
    }

    /// An acquire whose holder the loop launched, until it is answered: its lease, the kernel
    /// count right after the launch, how long it queued, and its grant once answered `ready`.
    struct Launched {
        let lease: Lease
        let order: LeaseOrder
        let count: KernelCount
        let waitedMs: Int?
        var granted: Granted?
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
        var owned = Owned(machine: Machine(policy: ServicePolicy(definition)), definition: definition)
        owned.published = ServiceSnapshot(definition: definition)
        self.owned = Mutex(owned)
        membership = Mutex((fromConfig, false))
        let (stream, continuation) = AsyncStream<Input>.makeStream()
        events = continuation
        Task { [weak self] in
            for await input in stream {
                guard let self else { return }
                switch input {
                case .event(let event): await self.handle(event)
                case let .acquire(waiter, order): await self.take(waiter, order)
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

    /// An acquire: the machine gives it a slot (at once without `slots`; in turn with them),
    /// the loop launches its holder through the issuer and hands the machine the acquire,
    /// and the machine answers. Cancelling the calling task takes a queued acquire out of the
    /// queue (its client left).
    func acquire(_ order: LeaseOrder, timeoutMs: Int) async -> AcquireOutcome {
        let waiter = newWaiter()
        let answer = await withTaskCancellationHandler {
            await wait(waiter, timeoutMs: timeoutMs, input: .acquire(waiter, order))
        } onCancel: {
            send(.queueLeft(waiter, .disconnect))
        }
        let (launched, failure) = owned.withLock { ($0.launched.removeValue(forKey: waiter), $0.launchFailures.removeValue(forKey: waiter)) }
        if let failure { return .launchFailed(failure) }
        if case .ready = answer, let granted = launched?.granted { return .granted(granted) }
        if let lease = launched?.lease { await issuer.undo(lease, of: self, by: order.by) }
        if case .refused(let refusal) = answer { return .refused(refusal) }
        return .launchFailed(.holder("unexpected answer \(answer)"))
    }

    /// An acquire reaches the loop: the machine decides its slot (a slot, the queue, or a
    /// refusal; always a slot without `slots`).
    private func take(_ waiter: Waiter, _ order: LeaseOrder) async {
        owned.withLock { $0.slotWaits[waiter] = SlotWait(order: order) }
        await handle(.slotWanted(waiter, waitMs: order.request.waitMs))
    }

    /// Launches the waiter's holder and hands the machine its acquire. A launch that fails
    /// took no slot: the next in the queue gets it.
    func launch(_ waiter: Waiter, _ order: LeaseOrder, waitedMs: Int?) async {
        guard owned.withLock({ $0.answers[waiter] != nil }) else { return slotFreed() }  // it stopped waiting
        let lease: Lease
        do { lease = try await issuer.issue(order, on: self) } catch {
            let waiting = owned.withLock { owned in
                owned.launchFailures[waiter] = error
                return owned.answers.removeValue(forKey: waiter)
            }
            waiting?.resume(returning: .refused(.notRunning))
            return slotFreed()
        }
        let count = kernelCount()
        let waiting = owned.withLock { owned -> Bool in
            guard owned.answers[waiter] != nil else { return false }
            owned.launched[waiter] = Launched(lease: lease, order: order, count: count, waitedMs: waitedMs)
            return true
        }
        guard waiting else { return await issuer.undo(lease, of: self, by: order.by) }
        await handle(.acquire(waiter, by: order.by))
    }

    private func newWaiter() -> Waiter {
        owned.withLock { owned -> Waiter in
            owned.nextWaiter += 1
            return owned.nextWaiter
        }
    }

    private func wait(_ waiter: Waiter, timeoutMs: Int?, input: Input) async -> ServiceAnswer {
        await withCheckedContinuation { continuation in
            owned.withLock { $0.answers[waiter] = continuation }
            if let timeoutMs {
                context.loop.schedule(afterMs: timeoutMs) { [weak self] in
                    guard let self, let pending = self.owned.withLock({ $0.answers.removeValue(forKey: waiter) }) else { return }
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
        return owned.withLock { $0.machine.grantsAtOnce(now: monotonicMilliseconds()) }
    }

    /// What status shows; published after each event, once its records are committed.
    var snapshot: ServiceSnapshot { owned.withLock { $0.published } }
    /// The published snapshot's version, without copying it.
    var publishedVersion: UInt64 { owned.withLock { $0.published.version } }

    var definition: ServiceDefinition { owned.withLock { $0.definition } }

    /// A new definition applies at the next start; timing numbers apply at once.
    func redefine(_ definition: ServiceDefinition) {
        owned.withLock { $0.definition = definition }
        send(.definitionChanged(ServicePolicy(definition)))
    }

    /// The main process, while it runs.
    var mainProcess: PidFD? { owned.withLock { $0.mainEnded ? nil : $0.main } }

    /// The service's semaphore set: `[0]` counts its references.
    var semaphores: SemaphoreSet { semaphoreSet.withLock { $0 } }

    /// Puts a new set in place of one removed from outside procrefd.
    func replaceSemaphores(_ set: SemaphoreSet) {
        semaphoreSet.withLock { $0 = set }
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

    private func handle(_ event: MachineEvent) async {
        var next: MachineEvent? = event
        while let event = next {
            // The count is read under the lock `grantsAtOnce` checks with: an acquire granted
            // without the loop took its reference either before this read, or after this
            // event (and then it sees the machine's new phase).
            let actions = owned.withLock { $0.machine.handle(event, now: monotonicMilliseconds(), count: kernelCount()) }
            for action in actions { await run(action) }
            next = owned.withLock { $0.followUps.isEmpty ? nil : $0.followUps.removeFirst() }
        }
        await publish()
    }

    /// Handles `event` in the current step, after this action, with `record` queued (and
    /// committed before the step publishes, or with a later record of the step).
    func followUp(_ event: MachineEvent, after record: PendingWrite<Void>) {
        queue(record)
        owned.withLock { $0.followUps.append(event) }
    }

    /// Queues `record` with the step: committed before the step publishes (a storage
    /// failure is logged there, as for every record of a step).
    func queue(_ record: PendingWrite<Void>) {
        owned.withLock { $0.queuedRecords.append(record) }
    }

    /// Shows the machine's state, once every record of the step is committed: status never
    /// reports a state whose record is not.
    private func publish() async {
        for record in owned.withLock({ owned in defer { owned.queuedRecords = [] }; return owned.queuedRecords }) {
            do { try await context.committed(record) } catch { context.logger.error("cannot record for \(name): \(error)") }
        }
        owned.withLock { owned in owned.published = owned.published.updated(from: owned) }
    }

    private func run(_ action: MachineAction) async {
        switch action {
        case let .spawn(reason, actor): await spawn(reason: reason, actor: actor)
        case .readPidFile: send(.pidFileRead(adoptFromPidFile()))
        case let .probe(token, readiness): Task { await self.probe(token: token, readiness: readiness) }
        case let .teardown(reason, actor): Task { await self.teardown(reason: reason, actor: actor) }
        case let .schedule(timer, afterMs, token):
            let id = context.loop.schedule(afterMs: afterMs) { [weak self] in self?.send(.timerFired(timer, token: token)) }
            owned.withLock { $0.timers[timer] = id }
        case .cancel(let timer):
            if let id = owned.withLock({ $0.timers.removeValue(forKey: timer) }) { context.loop.cancel(id) }
        case let .answer(waiter, answer):
            // Taken before the commit below, so a timeout cannot answer the waiter `busy`
            // while its grant is being recorded.
            let (waiting, slotWait, launched) = owned.withLock {
                ($0.answers.removeValue(forKey: waiter), $0.slotWaits.removeValue(forKey: waiter), $0.launched[waiter])
            }
            // A granted acquire's records join this step's: one commit, not two.
            if waiting != nil, case .ready(let started) = answer, let launched {
                let write = issuer.recordGrant(launched.lease, count: launched.count, started: started, waitedMs: launched.waitedMs, launched.order)
                let granted = Granted(lease: launched.lease, write: write, count: launched.count, started: started, waitedMs: launched.waitedMs)
                owned.withLock { $0.launched[waiter]?.granted = granted }
            }
            // The grant's write is queued behind the step's records, so it commits with them
            // here (or, in a step with none, when its acquire awaits it).
            await publish()
            slotWait?.stopWatching(on: context.loop)
            waiting?.resume(returning: answer)
        case let .record(note, actor): await record(note, actor: actor)
        case .launch(let waiter): await launchQueued(waiter)
        case let .queued(waiter, position, waitMs): await queued(waiter, position: position, waitMs: waitMs)
        case let .leftQueue(waiter, position, reason): await leftQueue(waiter, position: position, reason)
        }
    }

    // MARK: The main process

    /// Makes `process` the main process and watches its exit.
    func setMain(_ process: PidFD) {
        owned.withLock {
            $0.main = process
            $0.mainEnded = false
            $0.mainExit = nil
        }
        do {
            try context.loop.watchExit(of: process) { [weak self] status in self?.mainExited(process, status) }
        } catch {
            context.logger.error("cannot watch service \(name): \(error)")
        }
    }

    private func mainExited(_ process: PidFD, _ status: ExitStatus?) {
        let reported = owned.withLock { owned -> [CheckedContinuation<Void, Never>] in
            guard owned.main === process else { return [] }
            owned.mainEnded = true
            owned.mainExit = status
            // Queued under the lock a teardown reads `mainEnded` with, so that the machine
            // hears of this exit before the teardown's `teardownFinished`, never during the
            // next start.
            send(.mainExited(MainExit(status)))
            defer { owned.exitReportWaiters = [:] }
            return Array(owned.exitReportWaiters.values)
        }
        for waiter in reported { waiter.resume() }
    }

    /// Takes over a main process left running by an earlier procrefd (not our child: its
    /// exit status is unknown).
    func adopt(_ process: PidFD) {
        setMain(process)
        send(.adopted)
    }
}
