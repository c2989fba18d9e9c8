import Testing
import Wire
@testable import Lifecycle
@testable import LifecycleModel

/// Counted slots in the service machine: who gets a slot, who queues, in which order, and
/// how a wait ends. The kernel count is made up; no processes.
@Suite("Slots")
struct SlotMachineTests {
    static func launches(_ actions: [MachineAction]) -> [Waiter] {
        actions.compactMap { if case .launch(let waiter) = $0 { return waiter } else { return nil } }
    }

    static func lock(slots: Int) -> MachineDriver {
        var driver = MachineDriver {
            $0 = ServiceDefinition(start: [], slots: slots)
        }
        driver.count = 0
        return driver
    }

    @Test("free slots are taken at once, counting the holders launched in the same step; the rest queue in order")
    func queueInOrder() {
        var driver = Self.lock(slots: 2)
        #expect(Self.launches(driver.send(.slotWanted(1, waitMs: 1_000))) == [1])
        driver.count = 1
        #expect(Self.launches(driver.send(.slotWanted(2, waitMs: 1_000))) == [2])
        driver.count = 2
        #expect(driver.send(.slotWanted(3, waitMs: 1_000)) == [.queued(3, position: 1, waitMs: 1_000)])
        #expect(driver.send(.slotWanted(4, waitMs: 500)) == [.queued(4, position: 2, waitMs: 500)])
        #expect(driver.machine.slotQueue == [3, 4])

        // Both leases end before the loop hears of either: two slots for the two heads.
        driver.count = 0
        #expect(Self.launches(driver.send(.slotFreed)) == [3, 4])
        #expect(driver.machine.slotQueue.isEmpty)
    }

    @Test("a newcomer never overtakes the queue, even when a slot is free as it arrives")
    func noOvertaking() {
        var driver = Self.lock(slots: 1)
        driver.count = 1
        driver.send(.slotWanted(1, waitMs: 1_000))
        driver.count = 0  // freed, and the loop has not yet heard `slotFreed`
        #expect(driver.send(.slotWanted(2, waitMs: 1_000)) == [.queued(2, position: 2, waitMs: 1_000)])
        #expect(Self.launches(driver.send(.slotFreed)) == [1])
        driver.count = 1
        #expect(Self.launches(driver.send(.slotFreed)).isEmpty)
        #expect(driver.machine.slotQueue == [2])
    }

    @Test("wait_ms 0 is refused at once with the position it would have had; nothing queues")
    func noWait() {
        var driver = Self.lock(slots: 1)
        driver.count = 1
        driver.send(.slotWanted(1, waitMs: 1_000))
        #expect(driver.send(.slotWanted(2, waitMs: 0)) == [.answer(2, .refused(.slotsExhausted(position: 2)))])
        #expect(driver.machine.slotQueue == [1])
    }

    @Test("a wait ends by timeout, disconnect or client exit: recorded with its position, the queue closes up")
    func leaving() {
        var driver = Self.lock(slots: 1)
        driver.count = 1
        for waiter in 1...3 { driver.send(.slotWanted(Waiter(waiter), waitMs: 1_000)) }
        #expect(driver.send(.queueLeft(2, .disconnect)) == [
            .leftQueue(2, position: 2, .disconnect), .answer(2, .refused(.leftQueue(.disconnect))),
        ])
        #expect(driver.send(.queueLeft(1, .timeout)) == [
            .leftQueue(1, position: 1, .timeout), .answer(1, .refused(.slotsExhausted(position: 1))),
        ])
        #expect(driver.send(.queueLeft(1, .clientExit)).isEmpty)  // gone already
        #expect(driver.machine.slotQueue == [3])
        #expect(driver.send(.abandon(3)).contains(.leftQueue(3, position: 1, .timeout)))
        #expect(driver.machine.slotQueue.isEmpty)
    }

    @Test("at shutdown the queue is closed: everyone queued is refused, in order")
    func queueClosed() {
        var driver = Self.lock(slots: 1)
        driver.count = 1
        driver.send(.slotWanted(1, waitMs: 1_000))
        driver.send(.slotWanted(2, waitMs: 1_000))
        #expect(driver.send(.queueClosed) == [
            .leftQueue(1, position: 1, .shutdown), .answer(1, .refused(.leftQueue(.shutdown))),
            .leftQueue(2, position: 1, .shutdown), .answer(2, .refused(.leftQueue(.shutdown))),
        ])
        #expect(driver.machine.slotQueue.isEmpty)
    }

    @Test("more slots in a new definition go to the queue at once")
    func redefined() {
        var driver = Self.lock(slots: 1)
        driver.count = 1
        driver.send(.slotWanted(1, waitMs: 1_000))
        driver.send(.slotWanted(2, waitMs: 1_000))
        #expect(Self.launches(driver.send(.definitionChanged(ServicePolicy(ServiceDefinition(start: [], slots: 3))))) == [1, 2])
    }

    @Test("a lock has no process: ready while counted, stopped at 0, and a stop refuses the queue")
    func lockLifecycle() {
        var driver = Self.lock(slots: 1)
        driver.count = 1
        let acquired = driver.send(.acquire(1, by: "a"))
        #expect(acquired == [.answer(1, .ready(started: false))])
        #expect(driver.machine.state == .ready)
        driver.send(.slotWanted(2, waitMs: 1_000))
        driver.count = 0
        #expect(driver.send(.lastReferenceGone(reason: "last_release", by: "a", 9)) == [.answer(9, .done(stopped: false))])
        #expect(driver.machine.state == .stopped)
        // Start-up reconciliation of a lock whose holders outlived procrefd: ready, nothing spawned.
        driver.count = 1
        #expect(driver.send(.startRequested(10, by: "procrefd")) == [.answer(10, .done(stopped: false))])
        #expect(driver.machine.state == .ready)
        let stop = driver.send(.stopRequested(reason: "shutdown", by: "procrefd", 11))
        #expect(stop.teardownReason == "shutdown")
        let stopped = driver.send(.teardownFinished)
        #expect(stopped.contains(.leftQueue(2, position: 1, .serviceStopped)))
        #expect(stopped.answers == [11: .done(stopped: true), 2: .refused(.leftQueue(.serviceStopped))])
    }

    @Test("a service without slots launches every acquire; definitions check slots and lock fields")
    func definitions() {
        var driver = MachineDriver()
        #expect(Self.launches(driver.send(.slotWanted(1, waitMs: 0))) == [1])
        #expect(throws: Never.self) { try ServiceDefinition(start: [], slots: 1).validate() }
        #expect(throws: Never.self) { try ServiceDefinition(start: ["/bin/sleep", "9"], slots: 2).validate() }
        #expect(ServiceDefinition(start: []).validationField == "start")
        #expect(ServiceDefinition(start: [], slots: 0).validationField == "slots")
        #expect(ServiceDefinition(start: [], slots: 1, env: ["A": "b"]).validationField == "env")
        var withHealth = ServiceDefinition(start: [], slots: 1)
        withHealth.health = HealthCheck(kind: .tcp(host: "127.0.0.1", port: 9), timeoutMs: 100)
        #expect(withHealth.validationField == "health")
    }
}

extension ServiceDefinition {
    /// The field `validate()` names, nil when valid.
    var validationField: String? {
        do { try validate() } catch { return error.field }
        return nil
    }
}
