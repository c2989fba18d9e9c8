import Glibc
@testable import Lifecycle
@testable import LifecycleModel
import Posix
import Testing

/// An unreadable kernel count never reads as 0: the machine stops nothing on it, and says so once.
@Suite("Unreadable kernel count")
struct KernelCountMachineTests {
    static let removed = KernelCount.unreadable(errno: EIDRM)

    @Test("a last release with the count unreadable neither stops nor lingers, and records kernel_unreadable once")
    func noStopOnUnknown() {
        for linger in [0, 2_000] {
            var driver = MachineDriver { $0.lingerMs = linger }
            driver.startReady()
            driver.count = Self.removed
            let gone = driver.send(.lastReferenceGone(reason: "last_release", by: "a", 7))
            #expect(gone.teardownReason == nil)
            #expect(gone.schedules(.linger) == nil)
            #expect(gone.answers == [7: .done(stopped: false)])
            #expect(gone.notes == [.kernelUnreadable(errno: EIDRM)])
            #expect(driver.machine.state == .ready)
            // Still unreadable: not recorded again.
            #expect(driver.send(.lastReferenceGone(reason: "last_release", by: "a", nil)).notes.isEmpty)
            // Readable again, and 0: the usual rules apply, and a later failure is a new spell.
            driver.count = 0
            let known = driver.send(.lastReferenceGone(reason: "last_release", by: "a", nil))
            #expect(known.teardownReason != nil || known.schedules(.linger) == linger)
            #expect(driver.machine.kernelUnreadable == nil)
        }
    }

    @Test("an expiring linger, a crash and a backoff with the count unreadable keep the service up")
    func timersOnUnknown() {
        var lingering = MachineDriver { $0.lingerMs = 1_000 }
        lingering.startReady()
        lingering.count = 0
        lingering.send(.lastReferenceGone(reason: "last_release", by: "a", nil))
        lingering.count = Self.removed
        #expect(lingering.fire(.linger, after: 1_000).teardownReason == nil)
        #expect(lingering.machine.state == .ready)

        var crashed = MachineDriver()
        crashed.startReady()
        crashed.count = Self.removed
        crashed.send(.mainExited(MainExit(.exited(code: 1))))
        // Someone may still count it: restarted after the backoff, as with a count above 0.
        #expect(crashed.send(.teardownFinished).schedules(.backoff) != nil)
        #expect(crashed.fire(.backoff, after: 60_000).spawnReason == .restart)
    }

    @Test("a slotted service grants no slot while the count is unreadable")
    func noSlotOnUnknown() {
        var driver = MachineDriver { $0.slots = 2 }
        driver.count = Self.removed
        let wanted = driver.send(.slotWanted(1, waitMs: 0))
        #expect(!wanted.contains(.launch(1)))
        driver.count = 0
        #expect(driver.send(.slotWanted(2, waitMs: 0)).contains(.launch(2)))
    }
}
