import AuditStore
import Posix
import LifecycleModel
import Synchronization

/// An acquire through the service's loop: its slot, its holder's launch, and its answer.
extension ServiceExecutor {
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
        switch shared.withLock({ $0.settled.removeValue(forKey: waiter) }) {
        case .launchFailed(let failure)?: return .launchFailed(failure)
        case .granted(let granted)?: return .granted(granted)
        case .returned(let lease)?: await issuer.undo(lease, of: self, by: order.by)
        case nil: break
        }
        if case .refused(let refusal) = answer { return .refused(refusal) }
        return .launchFailed(.holder("unexpected answer \(answer)"))
    }

    /// An acquire reaches the loop: the machine decides its slot (a slot, the queue, or a
    /// refusal; always a slot without `slots`).
    func take(_ waiter: Waiter, _ order: LeaseOrder, _ state: inout LoopState) async {
        state.slotWaits[waiter] = SlotWait(order: order)
        await handle(.slotWanted(waiter, waitMs: order.request.waitMs), &state)
    }

    /// Launches the waiter's holder and hands the machine its acquire. A launch that fails
    /// took no slot: the next in the queue gets it.
    func launch(_ waiter: Waiter, _ order: LeaseOrder, waitedMs: Int?, _ state: inout LoopState) async {
        guard isWaiting(waiter) else { return slotFreed() }  // it stopped waiting
        let lease: Lease
        do { lease = try await issuer.issue(order, on: self) } catch {
            let waiting = shared.withLock { shared in
                let waiting = shared.answers.removeValue(forKey: waiter)
                if waiting != nil { shared.settled[waiter] = .launchFailed(error) }
                return waiting
            }
            waiting?.resume(returning: .refused(.notRunning))
            return slotFreed()
        }
        let count = kernelCount()
        // It may stop waiting from here on: then its `abandon` gives the holder back.
        guard isWaiting(waiter) else { return await issuer.undo(lease, of: self, by: order.by) }
        state.launched[waiter] = Launched(lease: lease, order: order, count: count, waitedMs: waitedMs)
        await handle(.acquire(waiter, by: order.by), &state)
    }

    func isWaiting(_ waiter: Waiter) -> Bool { shared.withLock { $0.answers[waiter] != nil } }

    /// A launched acquire is answered: granted (its records queued with the step, one commit
    /// not two), or its holder goes back through its caller, or, when nobody waits any more,
    /// here.
    func settle(_ waiter: Waiter, _ launched: Launched, answer: ServiceAnswer, waiting: Bool) {
        guard waiting else {
            let (lease, by) = (launched.lease, launched.order.by)
            Task { await self.issuer.undo(lease, of: self, by: by) }
            return
        }
        let settled: Settled
        if case .ready(let started) = answer {
            let write = issuer.recordGrant(launched.lease, count: launched.count, started: started, waitedMs: launched.waitedMs, launched.order)
            settled = .granted(Granted(lease: launched.lease, write: write, count: launched.count, started: started, waitedMs: launched.waitedMs))
        } else {
            settled = .returned(launched.lease)
        }
        shared.withLock { $0.settled[waiter] = settled }
    }
}
