import AuditStore
import Posix
import Testing
@testable import Lifecycle
@testable import LifecycleModel

/// Every transition of the service machine, driven with a fake clock and no processes.
@Suite("Service machine")
struct ServiceMachineTests {
    @Test("first acquire: spawn, readiness probes until one passes, then ready; acquires meanwhile wait, one started it")
    func firstAcquire() {
        var driver = MachineDriver()
        let first = driver.send(.acquire(1, by: "a"))
        #expect(first.spawnReason == .acquire)
        #expect(first.schedules(.startDeadline) == 10_000)
        #expect(driver.machine.state == .starting)
        #expect(driver.send(.acquire(2, by: "b")).answers.isEmpty)
        let spawned = driver.send(.spawned)
        #expect(spawned.contains(.probe(token: driver.probe ?? 0, readiness: true)))
        #expect(driver.fail().schedules(.readinessRetry) == ServicePolicy.readinessRetryMs)
        #expect(driver.machine.lastHealth == "refused")
        #expect(driver.fire(.readinessRetry, after: 20).contains { if case .probe(_, true) = $0 { return true } else { return false } })
        driver.now += 5
        let ready = driver.pass()
        #expect(ready.answers == [1: .ready(started: true), 2: .ready(started: false)])
        #expect(ready.notes == [.ready(startupMs: 25, reason: .acquire)])
        #expect(ready.contains(.cancel(.startDeadline)))
        #expect(driver.machine.state == .ready)
    }

    @Test("without a health check the service is ready once spawned")
    func noHealthCheck() {
        var driver = MachineDriver { $0.health = nil }
        driver.send(.acquire(1, by: "a"))
        #expect(driver.send(.spawned).answers == [1: .ready(started: true)])
        #expect(driver.send(.acquire(2, by: "b")).answers == [2: .ready(started: false)])
    }

    @Test("a probe that passed within fresh_ms covers the next acquire; a stale one is probed again")
    func freshness() {
        var driver = MachineDriver()
        driver.startReady()
        driver.now += 100
        #expect(driver.send(.acquire(2, by: "b")).answers == [2: .ready(started: false)])
        driver.now += 200
        let stale = driver.send(.acquire(3, by: "c"))
        #expect(stale.answers.isEmpty)
        #expect(stale.contains { if case .probe(_, false) = $0 { return true } else { return false } })
        #expect(driver.send(.acquire(4, by: "d")).answers.isEmpty)  // shares the probe under way
        #expect(driver.pass().answers == [3: .ready(started: false), 4: .ready(started: false)])
    }

    @Test("failed probes are retried interval_ms apart; after `failures` the service is recovered in place")
    func recovery() {
        var driver = MachineDriver()
        driver.startReady()
        driver.now += 1_000
        driver.send(.acquire(2, by: "b"))
        #expect(driver.fail().schedules(.healthRetry) == 100)
        #expect(driver.machine.state == .unhealthy)
        driver.fire(.healthRetry, after: 100)
        driver.fail()
        driver.fire(.healthRetry, after: 100)
        let exhausted = driver.fail("gone")
        #expect(exhausted.notes == [.unhealthy(reason: "gone", probes: 3)])
        #expect(exhausted.teardownReason == "unhealthy")
        #expect(driver.machine.state == .recovering)
        #expect(driver.send(.teardownFinished).spawnReason == .recover)
        driver.send(.spawned)
        let ready = driver.pass()
        #expect(ready.notes == [.ready(startupMs: 0, reason: .recover)])
        #expect(ready.answers == [2: .ready(started: false)])
    }

    @Test("a recovery that fails refuses the waiters and is recorded")
    func failedRecovery() {
        var driver = MachineDriver { $0.health?.failures = 1 }
        driver.startReady()
        driver.now += 1_000
        driver.send(.acquire(2, by: "b"))
        driver.fail()
        driver.send(.teardownFinished)
        driver.send(.spawned)
        let timedOut = driver.fire(.startDeadline, after: 10_000)
        #expect(timedOut.notes == [.startFailed("not healthy within 10000 ms (last: refused)")])
        let finished = driver.send(.teardownFinished)
        #expect(finished.answers == [2: .refused(.startFailed("not healthy within 10000 ms (last: refused)"))])
        #expect(finished.notes.contains(.recoveryFailed("not healthy within 10000 ms (last: refused)")))
    }

    @Test("starts that keep failing: past restart_limit within the window the service is failed, acquires refused at once")
    func failedStarts() {
        var driver = MachineDriver { $0.restartLimit = 2 }
        for attempt in 1...3 {
            driver.send(.acquire(Waiter(attempt), by: "a"))
            driver.send(.spawnFailed("ENOENT"))
            driver.now += 10
        }
        #expect(driver.machine.failureReason == "3 failed starts within 60000 ms")
        #expect(driver.send(.acquire(9, by: "a")).answers == [9: .refused(.failed("3 failed starts within 60000 ms"))])
    }

    @Test("the main process exiting during start-up is a failed start; its leftovers are torn down first")
    func exitDuringStart() {
        var driver = MachineDriver()
        driver.send(.acquire(1, by: "a"))
        driver.send(.spawned)
        let exited = driver.send(.mainExited(MainExit(.exited(code: 0))))
        #expect(exited.notes == [.startFailed("exited during start-up with exit code 0")])
        #expect(exited.teardownReason == "start_failed")
        #expect(driver.send(.probePassed(token: driver.probe ?? 0)).isEmpty)  // a late probe is stale
        #expect(driver.send(.teardownFinished).answers == [1: .refused(.startFailed("exited during start-up with exit code 0"))])
        #expect(driver.machine.state == .stopped)
    }

    @Test("pid_file mode: the start command must exit 0, then the file must name a live process")
    func pidFile() {
        var driver = MachineDriver { $0.pidFile = "/run/x.pid" }
        driver.send(.acquire(1, by: "a"))
        #expect(driver.send(.spawned).isEmpty)
        #expect(driver.send(.mainExited(MainExit(.exited(code: 0)))) == [.readPidFile])
        #expect(driver.send(.pidFileRead(.notYet)).schedules(.pidFileRetry) == ServicePolicy.pidFileRetryMs)
        #expect(driver.fire(.pidFileRetry, after: 10) == [.readPidFile])
        #expect(driver.send(.pidFileRead(.adopted)).contains { if case .probe(_, true) = $0 { return true } else { return false } })

        var failing = MachineDriver { $0.pidFile = "/run/x.pid" }
        failing.send(.acquire(1, by: "a"))
        failing.send(.spawned)
        #expect(failing.send(.mainExited(MainExit(.exited(code: 1)))).notes
            == [.startFailed("the start command ended with exit code 1 (pid_file mode expects exit code 0)")])

        var silent = MachineDriver { $0.pidFile = "/run/x.pid" }
        silent.send(.acquire(1, by: "a"))
        silent.send(.spawned)
        silent.send(.mainExited(MainExit(.exited(code: 0))))
        #expect(silent.fire(.startDeadline, after: 10_000).notes == [.startFailed("/run/x.pid names no live process of the service")])
    }

    @Test("a crash while leased restarts with doubling backoff, then fails at the limit")
    func crashRestarts() {
        var driver = MachineDriver { $0.restartLimit = 2 }
        driver.startReady()
        for (attempt, backoff) in [(1, 500), (2, 1_000)] {
            let crashed = driver.send(.mainExited(MainExit(.signaled(signal: 9))))
            #expect(crashed.notes.first == .exited(MainExit(.signaled(signal: 9))))
            #expect(crashed.teardownReason == "exited")
            let planned = driver.send(.teardownFinished)
            #expect(planned.notes == [.restarting(backoffMs: backoff, attempt: attempt)])
            #expect(driver.machine.state == .recovering)
            #expect(driver.fire(.backoff, after: Int64(backoff)).spawnReason == .restart)
            driver.send(.spawned)
            #expect(driver.pass().notes == [.ready(startupMs: 0, reason: .restart)])
        }
        driver.send(.mainExited(MainExit(nil)))
        let failed = driver.send(.teardownFinished)
        #expect(failed.notes == [.failed("2 restarts within 60000 ms", count: 1)])
        #expect(driver.machine.state == .failed)
    }

    @Test("a crash restart is dropped when nothing counts the service any more")
    func crashWithoutLeases() {
        var driver = MachineDriver()
        driver.startReady()
        driver.send(.mainExited(MainExit(nil)))
        driver.count = 0
        #expect(driver.send(.teardownFinished).isEmpty)
        #expect(driver.machine.state == .stopped)

        var backingOff = MachineDriver()
        backingOff.startReady()
        backingOff.send(.mainExited(MainExit(nil)))
        backingOff.send(.teardownFinished)
        backingOff.count = 0
        #expect(backingOff.fire(.backoff, after: 500).isEmpty)
        #expect(backingOff.machine.state == .stopped)
    }

    @Test("restarts older than the window no longer count")
    func restartWindow() {
        var driver = MachineDriver { $0.restartLimit = 1 }
        driver.startReady()
        driver.send(.mainExited(MainExit(nil)))
        driver.send(.teardownFinished)
        driver.fire(.backoff, after: 500)
        driver.send(.spawned)
        driver.pass()
        driver.now += 60_001
        driver.send(.mainExited(MainExit(nil)))
        #expect(driver.send(.teardownFinished).notes == [.restarting(backoffMs: 500, attempt: 1)])
    }

    @Test("the last release stops at once without linger, and the releaser hears it stopped")
    func lastRelease() {
        var driver = MachineDriver()
        driver.startReady()
        driver.count = 0
        let gone = driver.send(.lastReferenceGone(reason: "last_release", by: "a", 7))
        #expect(gone.teardownReason == "last_release")
        #expect(driver.machine.state == .stopping)
        #expect(driver.send(.teardownFinished).answers == [7: .done(stopped: true)])
        #expect(driver.machine.state == .stopped)
    }

    @Test("a release while others still count, or a stale one, changes nothing")
    func notLastRelease() {
        var driver = MachineDriver()
        driver.startReady()
        driver.count = 2
        #expect(driver.send(.lastReferenceGone(reason: "last_release", by: "a", 7)) == [.answer(7, .done(stopped: false))])
        #expect(driver.machine.state == .ready)
    }

    @Test("linger: the stop waits linger_ms; an acquire meanwhile keeps the service; a stale timer does nothing")
    func linger() {
        var driver = MachineDriver { $0.lingerMs = 2_000 }
        driver.startReady()
        driver.count = 0
        #expect(driver.send(.lastReferenceGone(reason: "last_release", by: "a", nil)).schedules(.linger) == 2_000)
        #expect(driver.machine.lingerUntil == driver.now + 2_000)
        let stale = driver.timers[.linger] ?? 0
        driver.count = 1
        let kept = driver.send(.acquire(2, by: "b"))
        #expect(kept.contains(.cancel(.linger)))
        #expect(kept.answers == [2: .ready(started: false)])
        #expect(driver.send(.timerFired(.linger, token: stale)).isEmpty)
        driver.count = 0
        driver.send(.lastReferenceGone(reason: "last_release", by: "a", nil))
        #expect(driver.fire(.linger, after: 2_000).teardownReason == "linger_expired")
    }

    @Test("grantsAtOnce is true exactly when an acquire would be answered ready with nothing else to do")
    func grantsAtOnce() {
        var scenarios: [(String, MachineDriver)] = []
        scenarios.append(("stopped", MachineDriver()))
        var starting = MachineDriver()
        starting.send(.acquire(1, by: "a"))
        scenarios.append(("starting", starting))
        var fresh = MachineDriver()
        fresh.startReady()
        scenarios.append(("ready, health fresh", fresh))
        var stale = fresh
        stale.now += 1_000
        scenarios.append(("ready, health stale", stale))
        var unchecked = MachineDriver { $0.health = nil }
        unchecked.startReady()
        scenarios.append(("ready, no health check", unchecked))
        var lingering = MachineDriver { $0.lingerMs = 2_000 }
        lingering.startReady()
        lingering.count = 0
        lingering.send(.lastReferenceGone(reason: "last_release", by: "a", nil))
        lingering.count = 1
        scenarios.append(("lingering", lingering))
        var stopping = fresh
        stopping.count = 0
        stopping.send(.lastReferenceGone(reason: "last_release", by: "a", nil))
        scenarios.append(("stopping", stopping))
        for (name, driver) in scenarios {
            var probe = driver
            let answeredAtOnce = probe.send(.acquire(99, by: "x")) == [.answer(99, .ready(started: false))]
            #expect(driver.machine.grantsAtOnce(now: driver.now) == answeredAtOnce, "\(name)")
        }
        #expect(scenarios.filter { $0.1.machine.grantsAtOnce(now: $0.1.now) }.map(\.0) == ["ready, health fresh", "ready, no health check"])
        // With slots the queue decides first (slotWanted), never the fast path.
        var slotted = MachineDriver { $0.slots = 2 }
        slotted.startReady()
        #expect(slotted.machine.state == .ready && !slotted.machine.grantsAtOnce(now: slotted.now))
    }

    @Test("an acquire during a stop waits, and starts the service again")
    func acquireWhileStopping() {
        var driver = MachineDriver()
        driver.startReady()
        driver.count = 0
        driver.send(.lastReferenceGone(reason: "last_release", by: "a", nil))
        driver.count = 1
        #expect(driver.send(.acquire(2, by: "b")).answers.isEmpty)
        #expect(driver.send(.teardownFinished).spawnReason == .acquire)
        driver.send(.spawned)
        #expect(driver.pass().answers == [2: .ready(started: true)])
    }

    @Test("a service that became ready after every acquirer left is stopped")
    func readyWithNobody() {
        var driver = MachineDriver()
        driver.send(.acquire(1, by: "a"))
        driver.send(.abandon(1))
        driver.send(.spawned)
        driver.count = 0
        let ready = driver.pass()
        #expect(ready.answers.isEmpty)
        #expect(ready.teardownReason == "last_release")
    }

    @Test("admin restart: refused unless ready; otherwise a stop and a start, answered when ready")
    func adminRestart() {
        var driver = MachineDriver()
        #expect(driver.send(.restartRequested(5, by: "admin")).answers == [5: .refused(.notRunning)])
        driver.send(.acquire(1, by: "a"))
        #expect(driver.send(.restartRequested(5, by: "admin")).answers == [5: .refused(.busy(.starting))])
        driver.send(.spawned)
        driver.pass()
        #expect(driver.send(.restartRequested(6, by: "admin")).teardownReason == "admin_restart")
        #expect(driver.send(.teardownFinished).spawnReason == .adminRestart)
        driver.send(.spawned)
        #expect(driver.pass().answers == [6: .done(stopped: false)])
    }

    @Test("reset: refused unless failed; clears the history, starts again only while leases count")
    func reset() {
        var driver = MachineDriver { $0.restartLimit = 0 }
        #expect(driver.send(.resetRequested(5, by: "admin")).answers == [5: .refused(.notFailed)])
        driver.send(.acquire(1, by: "a"))
        driver.send(.spawnFailed("ENOENT"))
        #expect(driver.machine.state == .failed)
        driver.count = 0
        let idle = driver.send(.resetRequested(6, by: "admin"))
        #expect(idle.notes == [.reset(count: 0)])
        #expect(idle.answers == [6: .done(stopped: false)])
        #expect(driver.machine.restarts.isEmpty)

        var leased = MachineDriver { $0.restartLimit = 0 }
        leased.send(.acquire(1, by: "a"))
        leased.send(.spawnFailed("ENOENT"))
        #expect(leased.send(.resetRequested(7, by: "admin")).spawnReason == .reset)
        leased.send(.spawned)
        #expect(leased.pass().answers == [7: .done(stopped: false)])
    }

    @Test("a stop request (drain, removal) tears down, cancels every timer and refuses whoever waits")
    func stopRequest() {
        var driver = MachineDriver()
        driver.send(.acquire(1, by: "a"))
        let stop = driver.send(.stopRequested(reason: "shutdown", by: "procrefd", 9))
        #expect(stop.contains(.cancel(.startDeadline)))
        #expect(stop.teardownReason == "shutdown")
        #expect(driver.send(.teardownFinished).answers == [9: .done(stopped: true), 1: .refused(.stopped)])
        #expect(driver.timers.isEmpty)
    }

    @Test("start-up: an adopted main process is ready; a start request only starts a stopped service")
    func reconciliation() {
        var driver = MachineDriver()
        driver.send(.adopted)
        #expect(driver.machine.state == .ready)
        #expect(driver.send(.startRequested(3, by: "procrefd")) == [.answer(3, .done(stopped: false))])
        var stopped = MachineDriver()
        #expect(stopped.send(.startRequested(3, by: "procrefd")).spawnReason == .reconcile)
    }

    @Test("backoff doubles from restart_backoff_ms and stops at restart_backoff_max_ms")
    func backoff() {
        var definition = ServiceDefinition(start: ["/bin/true"])
        definition.restartBackoffMs = 100
        definition.restartBackoffMaxMs = 700
        let policy = ServicePolicy(definition)
        #expect((0..<5).map(policy.backoff(after:)) == [100, 200, 400, 700, 700])
    }
}
