/// Counted slots: a service with `slots` takes at most that many leases at once, and
/// acquires beyond them wait in one FIFO queue. The machine decides from the kernel count
/// read with each event (plus the holders it launches in that event); launches run one at a
/// time on the service's loop, so no two decisions can both take the last slot.
extension ServiceMachine {
    mutating func slotWanted(_ waiter: Waiter, waitMs: Int, _ step: inout Step) {
        // Behind anyone already queued, even with a slot free: a newcomer never overtakes.
        if slotQueue.isEmpty && hasFreeSlot(step) { return launch(waiter, &step) }
        let position = slotQueue.count + 1
        guard waitMs > 0 else { return step.actions.append(.answer(waiter, .refused(.slotsExhausted(position: position)))) }
        slotQueue.append(waiter)
        step.actions.append(.queued(waiter, position: position, waitMs: waitMs))
    }

    /// Hands free slots to the head of the queue.
    mutating func grantSlots(_ step: inout Step) {
        while let head = slotQueue.first, hasFreeSlot(step) {
            slotQueue.removeFirst()
            launch(head, &step)
        }
    }

    mutating func leaveQueue(_ waiter: Waiter, _ reason: QueueExit, _ step: inout Step) {
        guard let index = slotQueue.firstIndex(of: waiter) else { return }
        slotQueue.remove(at: index)
        let position = index + 1
        step.actions.append(.leftQueue(waiter, position: position, reason))
        let refusal: ServiceRefusal = reason == .timeout ? .slotsExhausted(position: position) : .leftQueue(reason)
        step.actions.append(.answer(waiter, .refused(refusal)))
    }

    private func hasFreeSlot(_ step: Step) -> Bool {
        guard let slots = policy.slots else { return true }
        return step.count.fits(adding: step.launches, below: slots)
    }

    private mutating func launch(_ waiter: Waiter, _ step: inout Step) {
        step.launches += 1
        step.actions.append(.launch(waiter))
    }
}
