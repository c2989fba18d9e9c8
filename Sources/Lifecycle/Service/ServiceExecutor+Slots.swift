import AuditStore
import Posix
import LifecycleModel
import Synchronization

/// An acquire of a slotted service, from its arrival until it takes a slot or leaves.
struct SlotWait: Sendable {
    let order: LeaseOrder
    /// When it joined the queue (monotonic ms); nil while it has not queued.
    var queuedAt: Int64?
    /// Ends the wait after `wait_ms`.
    var timer: IOLoop.TimerID?
    /// Its client's process (`client_pid`) and the watch on its exit.
    var client: (process: PidFD, watch: IOLoop.WatchID)?

    init(order: LeaseOrder) { self.order = order }

    func stopWatching(on loop: IOLoop) {
        if let timer { loop.cancel(timer) }
        if let client { loop.unwatch(client.watch) }
    }

    func waitedMs(at now: Int64) -> Int? { queuedAt.map { Int(now - $0) } }
}

/// The executor's slot actions: queueing an acquire (its record, its deadline, a watch on
/// its client), launching the holder of one that got a slot, and recording one that left.
extension ServiceExecutor {
    func launchQueued(_ waiter: Waiter, _ state: inout LoopState) async {
        // The slot the machine gave it goes to the next one when it is gone.
        guard let wait = state.slotWaits.removeValue(forKey: waiter) else { return slotFreed() }
        wait.stopWatching(on: context.loop)
        let waited = wait.waitedMs(at: monotonicMilliseconds())
        if let waited { Telemetry.queueWaited(service: name, milliseconds: waited) }
        await launch(waiter, wait.order, waitedMs: waited, &state)
    }

    func queued(_ waiter: Waiter, position: Int, waitMs: Int, _ state: inout LoopState) async {
        guard let order = state.slotWaits[waiter]?.order else { return }
        let queuedAt = monotonicMilliseconds()
        var detail: [String: DetailValue] = ["position": .int(Int64(position)), "wait_ms": .int(Int64(waitMs))]
        if let clientPID = order.request.clientPID { detail["client_pid"] = .int(Int64(clientPID)) }
        await context.recordLogged(NewEvent(.leaseQueued, service: name, actor: order.by, detail: detail))

        let loop = context.loop
        let timer = loop.schedule(afterMs: waitMs) { [weak self] in self?.send(.queueLeft(waiter, .timeout)) }
        var client: (process: PidFD, watch: IOLoop.WatchID)?
        if let clientPID = order.request.clientPID {
            if let identity = ProcessIdentity.of(pid: clientPID), let process = try? PidFD(identity: identity),
                let watch = loop.watch(.readable, on: process.fd, handler: { [weak self] in self?.send(.queueLeft(waiter, .clientExit)) })
            {
                client = (process, watch)
            } else {
                send(.queueLeft(waiter, .clientExit))  // gone already
            }
        }
        // The loop runs one action at a time: the wait is still there (only this loop ends it).
        state.slotWaits[waiter]?.queuedAt = queuedAt
        state.slotWaits[waiter]?.timer = timer
        state.slotWaits[waiter]?.client = client
    }

    func leftQueue(_ waiter: Waiter, position: Int, _ reason: QueueExit, _ state: inout LoopState) async {
        // The answer that follows ends the wait's watches.
        guard let wait = state.slotWaits[waiter] else { return }
        var detail: [String: DetailValue] = ["reason": .string(reason.rawValue), "position": .int(Int64(position))]
        if let waited = wait.waitedMs(at: monotonicMilliseconds()) { detail["waited_ms"] = .int(Int64(waited)) }
        await context.recordLogged(NewEvent(.leaseQueueLeft, service: name, actor: wait.order.by, detail: detail))
    }

    /// A lease of this service ended (or a slot went unused): with slots, the head of the
    /// queue may take its place.
    func slotFreed() {
        if shared.withLock({ $0.slotted }) { send(.slotFreed) }
    }
}
