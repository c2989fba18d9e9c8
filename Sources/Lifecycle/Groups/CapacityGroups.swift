import AuditStore
import FoundationEssentials
import LifecycleModel
import Posix
import Synchronization

/// Capacity groups (`[groups.NAME] capacity`, a member's `group` and `cost`): only what fits
/// runs. A start that does not fit first evicts members nothing counts (lingering or
/// frozen, least recently used first), then waits in the group's FIFO queue (`wait_ms`),
/// then is refused naming who holds the running members. Starts within a group are admitted
/// one at a time, so two cannot both see the same free capacity.
final class CapacityGroups: Sendable {
    private let context: LifecycleContext
    /// The service of a name (the registry's).
    private let lookup: @Sendable (String) -> ServiceExecutor?

    private struct Group {
        /// Running members (starting to stopping, frozen included) and their costs.
        var running: [String: Int] = [:]
        /// Starts waiting for capacity, first in first served.
        var queue: [Waiting] = []
        var inUse: Int { running.values.reduce(0, +) }
    }

    private struct Waiting {
        let service: String
        let id: UInt64
        /// Set while it waits; taken when it is woken.
        var wake: CheckedContinuation<Void, Never>?
        /// Woken while it was not waiting (between two tries): its next wait returns at once.
        var woken = false
    }

    private struct State {
        var groups: [String: Group] = [:]
        var locks: [String: AsyncLock] = [:]
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    init(context: LifecycleContext, lookup: @escaping @Sendable (String) -> ServiceExecutor?) {
        (self.context, self.lookup) = (context, lookup)
    }

    /// The group's capacity, as the config says now (nil: no such group).
    func capacity(of group: String) -> Int? { context.settings.current.groups[group] }

    /// What a start asked for.
    enum Admission: Sendable {
        case admitted
        /// Full, and nothing to evict or wait for: the running members, by name.
        case full(members: [String])
    }

    /// Admits `member` (cost `cost`) to `group`: at once when it fits, else after evicting
    /// idle members, else after waiting up to `waitMs` in the group's queue.
    func admit(_ member: ServiceExecutor, group: String, cost: Int, waitMs: Int, evict: @Sendable (ServiceExecutor, String) async -> Void) async -> Admission {
        let deadline = monotonicMilliseconds() + Int64(waitMs)
        let lock = state.withLock { state in
            if let lock = state.locks[group] { return lock }
            let lock = AsyncLock()
            state.locks[group] = lock
            return lock
        }
        var queued: UInt64?
        defer { if let queued { leaveQueue(group, id: queued) } }
        while true {
            await lock.lock()
            let outcome = await tryAdmit(member, group: group, cost: cost, firstInQueue: queued, evict: evict)
            lock.unlock()
            switch outcome {
            case .admitted: return .admitted
            case .full(let members):
                let left = deadline - monotonicMilliseconds()
                guard left > 0 else { return .full(members: members) }
                queued = await waitForRoom(group, member: member.name, queued: queued, timeoutMs: Int(left))
            }
        }
    }

    /// One try, under the group's lock. Only the head of the queue (or anyone, with none
    /// queued) may take room that freed up.
    private func tryAdmit(
        _ member: ServiceExecutor, group: String, cost: Int, firstInQueue id: UInt64?, evict: @Sendable (ServiceExecutor, String) async -> Void
    ) async -> Admission {
        let capacity = capacity(of: group) ?? 0
        func fits() -> (Bool, [String]) {
            state.withLock { state in
                let entry = state.groups[group] ?? Group()
                if entry.running[member.name] != nil { return (true, []) }
                let inTurn = entry.queue.first.map { $0.id == id } ?? true
                return (inTurn && entry.inUse + cost <= capacity, entry.running.keys.sorted())
            }
        }
        var (fitting, members) = fits()
        if !fitting, cost <= capacity {
            // Idle members go first, least recently used first, until the start fits.
            for victim in idleMembers(of: group, excluding: member.name) {
                await context.recordLogged(NewEvent(.serviceEvicted, service: victim.name, actor: Principal.procrefd, detail: [
                    "group": .string(group), "for": .string(member.name), "cost": .int(Int64(victim.definition.cost ?? 1)),
                ]))
                await evict(victim, member.name)
                forget(victim.name, in: group)
                (fitting, members) = fits()
                if fitting { break }
            }
        }
        guard fitting else { return .full(members: members) }
        state.withLock { $0.groups[group, default: Group()].running[member.name] = cost }
        publishMetrics(group)
        return .admitted
    }

    /// Running members of `group` nothing counts, frozen ones first (warm, but already out
    /// of use), then lingering ones; each kind idle the longest first.
    private func idleMembers(of group: String, excluding name: String) -> [ServiceExecutor] {
        let names = state.withLock { Array(($0.groups[group] ?? Group()).running.keys) }
        let idle = names.filter { $0 != name }.compactMap { lookup($0) }.filter { member in
            let snapshot = member.snapshot
            let resting = snapshot.state == .frozen || (snapshot.state == .ready && snapshot.lingerUntil != nil)
            return resting && member.kernelCount().isZero
        }
        return idle.map { ($0, $0.snapshot) }.sorted { a, b in
            let (aFrozen, bFrozen) = (a.1.state == .frozen, b.1.state == .frozen)
            return aFrozen != bFrozen ? aFrozen : a.1.idleSince < b.1.idleSince
        }.map(\.0)
    }

    /// Queues (or stays queued) and waits until room may have freed, or the time is up.
    private func waitForRoom(_ group: String, member: String, queued: UInt64?, timeoutMs: Int) async -> UInt64 {
        let id = queued ?? state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wokenAlready = state.withLock { state -> Bool in
                var entry = state.groups[group] ?? Group()
                defer { state.groups[group] = entry }
                guard let index = entry.queue.firstIndex(where: { $0.id == id }) else {
                    entry.queue.append(Waiting(service: member, id: id, wake: continuation))
                    return false
                }
                if entry.queue[index].woken {
                    entry.queue[index].woken = false
                    return true
                }
                entry.queue[index].wake = continuation
                return false
            }
            if wokenAlready { return continuation.resume() }
            publishMetrics(group)
            context.loop.schedule(afterMs: timeoutMs) { [weak self] in self?.wake(group, id: id) }
        }
        return id
    }

    /// Resumes the waiter `id` if it waits (it stays in line, and looks again).
    private func wake(_ group: String, id: UInt64) {
        let wake = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let index = state.groups[group]?.queue.firstIndex(where: { $0.id == id }) else { return nil }
            let wake = state.groups[group]?.queue[index].wake
            state.groups[group]?.queue[index].wake = nil
            state.groups[group]?.queue[index].woken = wake == nil
            return wake
        }
        wake?.resume()
    }

    private func leaveQueue(_ group: String, id: UInt64) {
        state.withLock { state in state.groups[group]?.queue.removeAll { $0.id == id } }
        wakeHead(of: group)
        publishMetrics(group)
    }

    /// The head of the queue tries again (room freed, or the one before it left).
    private func wakeHead(of group: String) {
        guard let head = state.withLock({ $0.groups[group]?.queue.first?.id }) else { return }
        wake(group, id: head)
    }

    /// A member's published state: running ones are counted (also those adopted at start-up),
    /// stopped or failed ones free their room. A start is counted when it is admitted, not
    /// when it shows `starting` (which comes first).
    func serviceChanged(_ member: ServiceExecutor, to serviceState: ServiceState) {
        guard let group = member.definition.capacityGroup else { return }
        switch serviceState {
        case .stopped, .failed: forget(member.name, in: group)
        case .starting: break
        case .ready, .unhealthy, .recovering, .stopping, .frozen:
            state.withLock { $0.groups[group, default: Group()].running[member.name] = member.definition.cost ?? 1 }
            publishMetrics(group)
        }
    }

    private func forget(_ name: String, in group: String) {
        let freed = state.withLock { $0.groups[group]?.running.removeValue(forKey: name) != nil }
        guard freed else { return }
        publishMetrics(group)
        wakeHead(of: group)
    }

    /// Each group: its capacity, the cost in use, its members running and its queue.
    var statuses: [GroupStatus] {
        let groups = context.settings.current.groups
        return state.withLock { state in
            groups.keys.sorted().map { name in
                let entry = state.groups[name] ?? Group()
                return GroupStatus(name: name, capacity: groups[name] ?? 0, inUse: entry.inUse, running: entry.running.keys.sorted(),
                                   queued: entry.queue.map(\.service))
            }
        }
    }

    private func publishMetrics(_ group: String) {
        let (inUse, queued) = state.withLock { ($0.groups[group]?.inUse ?? 0, $0.groups[group]?.queue.count ?? 0) }
        Telemetry.group(group, capacity: capacity(of: group) ?? 0, inUse: inUse, queued: queued)
    }
}

/// A capacity group, as status shows it.
public struct GroupStatus: Sendable, Equatable {
    public let name: String
    public let capacity: Int
    /// The cost of its running members.
    public let inUse: Int
    public let running: [String]
    /// Starts waiting for room, first first.
    public let queued: [String]
}
