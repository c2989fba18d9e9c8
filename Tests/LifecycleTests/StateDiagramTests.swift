import Foundation
import Posix
import Testing
@testable import Lifecycle
@testable import LifecycleModel

/// The README's state diagram is checked against the machine: scripted runs through every
/// kind of event collect the status-state changes they cause, and those must be exactly the
/// diagram's arrows.
@Suite("State diagram")
struct StateDiagramTests {
    /// Runs `script` and collects every change of `state` it causes.
    static func edges(_ configure: (inout ServiceDefinition) -> Void = { _ in }, _ script: (inout Recorder) -> Void) -> Set<String> {
        var recorder = Recorder(driver: MachineDriver(configure))
        script(&recorder)
        return recorder.edges
    }

    struct Recorder {
        var driver: MachineDriver
        var edges: Set<String> = []

        mutating func send(_ event: MachineEvent) { observe { $0.send(event) } }
        mutating func fire(_ timer: ServiceTimer, after ms: Int64 = 0) { observe { $0.fire(timer, after: ms) } }
        mutating func pass() { observe { $0.pass() } }
        mutating func fail() { observe { $0.fail() } }
        mutating func ready() {
            send(.acquire(1, by: "t"))
            send(.spawned)
            pass()
        }

        private mutating func observe(_ step: (inout MachineDriver) -> [MachineAction]) {
            let before = driver.machine.state
            _ = step(&driver)
            let after = driver.machine.state
            if before != after { edges.insert("\(before.rawValue) --> \(after.rawValue)") }
        }
    }

    static func observed() -> Set<String> {
        var all: Set<String> = []
        all.formUnion(edges { $0.ready() })
        all.formUnion(edges { $0.send(.adopted) })
        // Health: a failed probe, a pass after it, then failures to recovery.
        all.formUnion(edges { run in
            run.ready()
            run.driver.now += 1_000
            run.send(.acquire(2, by: "t"))
            run.fail()
            run.fire(.healthRetry, after: 100)
            run.pass()
            run.driver.now += 1_000
            run.send(.acquire(3, by: "t"))
            for _ in 1..<3 {
                run.fail()
                run.fire(.healthRetry, after: 100)
            }
            run.fail()
            run.send(.teardownFinished)
        })
        // Crash, backoff, restart; then a crash past the limit; then reset with leases.
        all.formUnion(edges({ $0.restartLimit = 1 }) { run in
            run.ready()
            run.send(.mainExited(MainExit(nil)))
            run.send(.teardownFinished)
            run.fire(.backoff, after: 500)
            run.send(.spawned)
            run.pass()
            run.send(.mainExited(MainExit(nil)))
            run.send(.teardownFinished)
            run.send(.resetRequested(4, by: "t"))
        })
        // A backoff that finds nothing counted.
        all.formUnion(edges { run in
            run.ready()
            run.send(.mainExited(MainExit(nil)))
            run.send(.teardownFinished)
            run.driver.count = 0
            run.fire(.backoff, after: 500)
        })
        // Last release; an acquire during the stop; admin restart.
        all.formUnion(edges { run in
            run.ready()
            run.driver.count = 0
            run.send(.lastReferenceGone(reason: "last_release", by: "t", nil))
            run.send(.teardownFinished)
            run.driver.count = 1
            run.ready()
            run.driver.count = 0
            run.send(.lastReferenceGone(reason: "last_release", by: "t", nil))
            run.driver.count = 1
            run.send(.acquire(2, by: "t"))
            run.send(.teardownFinished)
            run.send(.spawned)
            run.pass()
            run.send(.restartRequested(3, by: "t"))
        })
        // Failed starts: spawn failures to `failed`, a reset without leases; a start that
        // exits; a failure past the limit after a teardown.
        all.formUnion(edges({ $0.restartLimit = 1 }) { run in
            run.send(.acquire(1, by: "t"))
            run.send(.spawnFailed("ENOENT"))
            run.send(.acquire(2, by: "t"))
            run.send(.spawnFailed("ENOENT"))
            run.driver.count = 0
            run.send(.resetRequested(3, by: "t"))
            run.driver.count = 1
            run.send(.acquire(4, by: "t"))
            run.send(.spawned)
            run.send(.mainExited(MainExit(.exited(code: 1))))
            run.send(.teardownFinished)
            run.send(.acquire(5, by: "t"))
            run.send(.spawned)
            run.send(.mainExited(MainExit(.exited(code: 1))))
            run.send(.teardownFinished)
        })
        // Warm idle: frozen at the last release, thawed by an acquire, stopped after freeze_max_ms.
        all.formUnion(edges({ $0.idle = "freeze" }) { run in
            run.ready()
            run.driver.count = 0
            run.send(.lastReferenceGone(reason: "last_release", by: "t", nil))
            run.driver.count = 1
            run.send(.acquire(2, by: "t"))
            run.pass()
            run.driver.count = 0
            run.send(.lastReferenceGone(reason: "last_release", by: "t", nil))
            run.fire(.frozenMax, after: Int64(ServiceDefinition.defaultFreezeMaxMs))
            run.send(.teardownFinished)
        })
        // A lock (slots, no start): ready while counted, stopped at 0.
        all.formUnion(edges({ $0 = ServiceDefinition(start: [], slots: 1) }) { run in
            run.send(.acquire(1, by: "t"))
            run.driver.count = 0
            run.send(.lastReferenceGone(reason: "last_release", by: "t", nil))
        })
        return all
    }

    @Test("the README's state diagram has exactly the machine's transitions")
    func readmeDiagram() throws {
        let readme = try String(contentsOfFile: #filePath.replacingOccurrences(of: "Tests/LifecycleTests/StateDiagramTests.swift", with: "README.md"), encoding: .utf8)
        guard let start = readme.range(of: "```mermaid\nstateDiagram-v2\n"), let end = readme[start.upperBound...].range(of: "```") else {
            Issue.record("README.md has no mermaid state diagram")
            return
        }
        let documented = Set(readme[start.upperBound..<end.lowerBound].split(separator: "\n").compactMap { line -> String? in
            let arrow = line.split(separator: ":", maxSplits: 1)[0].trimmingCharacters(in: .whitespaces)
            return arrow.hasPrefix("[*]") || !arrow.contains("-->") ? nil : arrow
        })
        let observed = Self.observed()
        #expect(documented == observed, "only in README: \(documented.subtracting(observed).sorted()); only in the machine: \(observed.subtracting(documented).sorted())")
        let states = Set(observed.flatMap { $0.components(separatedBy: " --> ") })
        #expect(states == Set(ServiceState.allCases.map(\.rawValue)))
    }
}
