import AuditStore
import FoundationEssentials
import Posix
import Wire

/// What owns a managed process.
public enum ProcessOwner: Sendable, Equatable {
    /// The service's main process (leader of its group) or another member of its group.
    case service(name: String, leader: Bool)
    /// The holder of a lease.
    case holder(service: String, lease: String)
}

/// procref's process utilities (is_alive, terminate, kill, stop) for managed processes.
public struct ManagedProcess: Sendable, Equatable {
    public let identity: ProcessIdentity
    public let alive: Bool
    /// One-letter kernel state (R, S, D, T, Z, ...).
    public let state: String
    public let owner: ProcessOwner
}

/// How a stop ended.
public struct StopOutcome: Sendable, Equatable {
    public let process: ManagedProcess
    /// "TERM" or "KILL", or "already_gone".
    public let endedBy: String
}

extension Coordinator {
    /// A managed process. Throws `noSuchProcess` for no process, `processNotManaged` for one
    /// procrefd did not start (reads are not audited).
    public func managedProcess(_ pid: Int32) throws(LifecycleError) -> ManagedProcess {
        guard pid > 0, let stat = ProcessStat.read(pid: pid) else { throw .noSuchProcess(pid) }
        let identity = ProcessIdentity(pid: pid, startTime: stat.startTime)
        guard let owner = owner(of: identity, group: stat.processGroup) else { throw .processNotManaged(pid) }
        return ManagedProcess(identity: identity, alive: identity.isAlive, state: String(stat.state), owner: owner)
    }

    /// Sends `signalName` to a managed process through a pidfd (never to a recycled pid).
    /// A refusal is audited as `process.refused`.
    public func signalProcess(_ pid: Int32, signalName: String, actor: Principal) async throws(LifecycleError) -> ManagedProcess {
        guard let signo = Signals.number(named: signalName) else {
            throw .invalidField(DefinitionError(field: "signal", message: "one of \(Signals.byName.keys.sorted().joined(separator: ", "))"))
        }
        let process = try await managedOrAudited(pid, action: "signal \(signalName.uppercased())", actor: actor)
        do { try PidFD(identity: process.identity).signal(signo) } catch { throw .noSuchProcess(pid) }
        try await context.committed(context.submitRecord { [process] tx in try tx.append(NewEvent(.processSignaled, service: process.owner.service, lease: process.owner.lease, pid: pid,
                                    actor: actor, detail: ["signal": .string(Signals.name(of: signo)), "owner": .string(process.owner.kind)])) })
        return process
    }

    /// SIGTERM, wait up to `timeoutMs`, then SIGKILL; reports which ended it.
    public func stopProcess(_ pid: Int32, timeoutMs: Int, actor: Principal) async throws(LifecycleError) -> StopOutcome {
        guard (1...600_000).contains(timeoutMs) else {
            throw .invalidField(DefinitionError(field: "timeout_ms", message: "must be within 1...600000"))
        }
        let process = try await managedOrAudited(pid, action: "stop", actor: actor)
        let outcome = await Teardown(loop: context.loop).stop(process.identity, timeoutMs: timeoutMs)
        if outcome == .nothingRan { throw .noSuchProcess(pid) }
        let endedBy = outcome == .killed ? "KILL" : "TERM"
        try await context.committed(context.submitRecord { [process] tx in try tx.append(NewEvent(.processStopped, service: process.owner.service, lease: process.owner.lease, pid: pid,
                                    actor: actor, detail: ["ended_by": .string(endedBy), "timeout_ms": .int(Int64(timeoutMs)),
                                                           "owner": .string(process.owner.kind)])) })
        return StopOutcome(process: process, endedBy: endedBy)
    }

    private func managedOrAudited(_ pid: Int32, action: String, actor: Principal) async throws(LifecycleError) -> ManagedProcess {
        do {
            return try managedProcess(pid)
        } catch {
            if case .processNotManaged = error {
                try await context.record(NewEvent(.processRefused, pid: pid, actor: actor,
                                            detail: ["action": .string(action), "reason": "not managed by procrefd"]))
            }
            throw error
        }
    }

    private func owner(of identity: ProcessIdentity, group: Int32) -> ProcessOwner? {
        if let lease = leases.all.first(where: { $0.holder.identity == identity }) {
            return .holder(service: lease.service, lease: lease.id)
        }
        // Without cgroups, /proc is read once for all services, not once per service.
        var census: (scan: ProcessScan, carriers: [String: Set<Int32>])?
        for service in registry.all {
            guard let leader = service.mainProcess?.identity else { continue }
            if leader == identity { return .service(name: service.name, leader: true) }
            if group == leader.pid { return .service(name: service.name, leader: false) }
            if census == nil && service.processes.cgroup == nil {
                let scan = ProcessScan.now()
                census = (scan, scan.carriers(of: ServiceProcesses.markerVariable))
            }
            let members = census.map { service.processes.members(main: leader.pid, scan: $0.scan, carriers: $0.carriers) }
                ?? service.processes.members(main: leader.pid)
            if members.contains(identity.pid) { return .service(name: service.name, leader: false) }
        }
        return nil
    }
}

extension ProcessOwner {
    var service: String {
        switch self {
        case .service(let name, _): return name
        case .holder(let service, _): return service
        }
    }

    var lease: String? {
        if case .holder(_, let lease) = self { return lease }
        return nil
    }

    /// "service", "service_member" or "holder".
    public var kind: String {
        switch self {
        case .service(_, let leader): return leader ? "service" : "service_member"
        case .holder: return "holder"
        }
    }
}
