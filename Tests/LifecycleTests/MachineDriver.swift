import Posix
@testable import Lifecycle
@testable import LifecycleModel

/// Drives a `Machine` by hand: a fake clock, a made-up kernel count, no processes.
struct MachineDriver {
    var machine: Machine
    var now: Int64 = 1_000_000
    var count: KernelCount = 1
    /// The token of each timer as last armed, and of the last probe.
    var timers: [ServiceTimer: UInt64] = [:]
    var probe: UInt64?

    init(_ configure: (inout ServiceDefinition) -> Void = { _ in }) {
        var definition = ServiceDefinition(start: ["/bin/true"])
        definition.health = HealthCheck(kind: .tcp(host: "127.0.0.1", port: 9), timeoutMs: 100)
        configure(&definition)
        machine = Machine(policy: ServicePolicy(definition))
    }

    /// Handles `event` at the current time and count; notes timers and probes it starts.
    @discardableResult
    mutating func send(_ event: MachineEvent) -> [MachineAction] {
        let actions = machine.handle(event, now: now, count: count)
        for action in actions {
            switch action {
            case let .schedule(timer, _, token): timers[timer] = token
            case .cancel(let timer): timers[timer] = nil
            case let .probe(token, _): probe = token
            default: break
            }
        }
        return actions
    }

    /// Moves the clock and fires `timer` with its current token.
    @discardableResult
    mutating func fire(_ timer: ServiceTimer, after ms: Int64 = 0) -> [MachineAction] {
        now += ms
        guard let token = timers.removeValue(forKey: timer) else { return [] }
        return send(.timerFired(timer, token: token))
    }

    @discardableResult
    mutating func pass() -> [MachineAction] { send(.probePassed(token: probe ?? 0)) }

    @discardableResult
    mutating func fail(_ reason: String = "refused") -> [MachineAction] { send(.probeFailed(token: probe ?? 0, reason: reason)) }

    /// Stopped → ready through one acquire (waiter 1); returns the actions of the last step.
    @discardableResult
    mutating func startReady() -> [MachineAction] {
        send(.acquire(1, by: "test"))
        send(.spawned)
        return pass()
    }
}

/// `driver.count = 0` reads as a known count; `.unreadable(errno:)` spells the other case.
extension KernelCount: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int) { self = .known(value) }
}

extension Array where Element == MachineAction {
    var answers: [Waiter: ServiceAnswer] {
        var found: [Waiter: ServiceAnswer] = [:]
        for case let .answer(waiter, answer) in self { found[waiter] = answer }
        return found
    }

    var notes: [ServiceNote] { compactMap { if case let .record(note, _) = $0 { return note } else { return nil } } }

    var teardownReason: String? {
        for case let .teardown(reason, _) in self { return reason }
        return nil
    }

    var spawnReason: StartReason? {
        for case let .spawn(reason, _) in self { return reason }
        return nil
    }

    func schedules(_ timer: ServiceTimer) -> Int? {
        for case let .schedule(scheduled, afterMs, _) in self where scheduled == timer { return afterMs }
        return nil
    }
}
