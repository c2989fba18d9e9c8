import AuditStore
import Posix
import Wire

/// Why a lifecycle operation was refused or failed. The API maps each case to a status.
public enum LifecycleError: Error, Sendable, CustomStringConvertible {
    case invalidName(String)
    case invalidField(DefinitionError)
    case unknownService(String)
    case unknownLease(String)
    case leaseEnded(String, String)
    case serviceRunning(String)
    case serviceRemoving(String)
    case serviceLeased(String)
    /// Other services name it in `requires`.
    case serviceRequired(String, by: [String])
    /// Its capacity group has no room, nothing idle to evict, and the wait ran out.
    case groupFull(service: String, group: String, members: [GroupMember])
    case serviceNotRunning(String)
    case serviceFailed(service: String, reason: String)
    case serviceNotFailed(String)
    /// Starting, stopping or recovering: a restart must wait until it is done.
    case serviceBusy(String, String)
    case definedInConfig(String)
    case processNotManaged(Int32)
    case programNotAllowed(String)
    /// A `user` or group the definition may not name (api_users, or procrefd is not root).
    case userNotAllowed(String)
    case noSuchProcess(Int32)
    case timedOut(String)
    case leaseNotRenewable(String)
    case clientNotRunning(Int32)
    /// The client is another user's process (and the caller is below operator).
    case clientNotPermitted(Int32)
    case tooManyLeases(limit: Int)
    /// The caller holds `limits.max_leases_per_user` leases.
    case userLimit(limit: Int)
    /// Every slot was taken until the wait ran out; `position` is where the acquire stood.
    case slotsExhausted(service: String, slots: Int, position: Int)
    /// A queued acquire left the queue (its client went, or the service was stopped).
    case queueLeft(service: String, reason: String)
    case tooManyServices(limit: Int)
    case idempotencyMismatch(String)
    case startFailed(service: String, reason: String)
    case kernel(String)
    case holder(String)
    case storage(String)
    /// Records wait for storage (a full disk): no new lease until they are committed.
    case auditUnavailable(waiting: Int)
    case shuttingDown

    public var description: String {
        switch self {
        case .invalidName(let name): return "invalid service name \(name.debugDescription): must match ^[a-z0-9][a-z0-9._-]{0,62}$"
        case .invalidField(let error): return error.description
        case .unknownService(let name): return "no service named \(name)"
        case .unknownLease(let id): return "no live lease \(id)"
        case let .leaseEnded(id, how): return "lease \(id) had already ended (\(how)) when the release reached its holder"
        case .serviceRunning(let name): return "service \(name) is running; it can be redefined once stopped"
        case .serviceNotRunning(let name): return "service \(name) is not running"
        case .serviceLeased(let name): return "service \(name) is leased or running; it can be removed once unleased and stopped"
        case let .groupFull(service, group, members):
            let held = members.map { member in
                let leases = member.leases.map { lease in
                    "\(lease.owner.description) (holder \(lease.holder.debugDescription)\(lease.clientPID.map { ", client_pid \($0)" } ?? ""))"
                }
                return "\(member.service) (cost \(member.cost))" + (leases.isEmpty ? "" : " held by " + leases.joined(separator: ", "))
            }
            return "service \(service) cannot start: group \(group) is full; running: \(held.joined(separator: "; "))"
        case let .serviceRequired(name, by):
            return "service \(name) is required by \(by.joined(separator: ", ")); it can be removed once nothing requires it"
        case .serviceRemoving(let name):
            return "service \(name) was removed from the config file; it takes no new leases and goes once its last lease ends"
        case let .serviceFailed(service, reason): return "service \(service) has failed (\(reason)); reset it to try again"
        case .serviceNotFailed(let name): return "service \(name) has not failed; nothing to reset"
        case let .serviceBusy(name, state): return "service \(name) is \(state); try again once it is ready"
        case .definedInConfig(let name): return "service \(name) is defined in the config file; change it there"
        case .processNotManaged(let pid): return "process \(pid) is not managed by procrefd"
        case .programNotAllowed(let program): return "program \(program) is not in security.api_programs"
        case .userNotAllowed(let why): return why
        case .noSuchProcess(let pid): return "no process \(pid)"
        case .timedOut(let what): return "timed out: \(what)"
        case .leaseNotRenewable(let id): return "lease \(id) has no ttl_ms; it ends with its client or on release"
        case .clientNotRunning(let pid): return "client_pid \(pid) is not a running process"
        case .clientNotPermitted(let pid): return "client_pid \(pid) is not a process of yours"
        case .tooManyLeases(let limit): return "lease limit (\(limit)) reached"
        case .userLimit(let limit): return "you hold \(limit) leases (limits.max_leases_per_user)"
        case let .slotsExhausted(service, slots, position):
            return "all \(slots) slots of service \(service) are taken (queue position \(position) when the wait ended)"
        case let .queueLeft(service, reason): return "left the slot queue of service \(service): \(reason)"
        case .tooManyServices(let limit): return "service limit (\(limit)) reached"
        case .idempotencyMismatch(let key): return "Idempotency-Key \(key) was used with a different request"
        case let .startFailed(service, reason): return "service \(service) did not become ready: \(reason)"
        case .kernel(let message): return "kernel: \(message)"
        case .holder(let message): return "lease holder: \(message)"
        case .storage(let message): return "audit store: \(message)"
        case .shuttingDown: return "procrefd is shutting down"
        case .auditUnavailable(let waiting):
            return "the audit log cannot be written (disk full?): \(waiting) records wait in memory; no new lease until they are committed"
        }
    }
}

extension LifecycleError {
    /// The metrics label of an acquire refused for a reason other than bad input; nil for
    /// bad input (not a refusal worth counting).
    var refusalReason: String? {
        switch self {
        case .tooManyLeases, .userLimit: return "limit"
        case .slotsExhausted: return "slots_exhausted"
        case .groupFull: return "group_full"
        case .queueLeft: return "queue_left"
        case .serviceFailed: return "failed"
        case .startFailed: return "start_failed"
        case .timedOut: return "busy"
        case .shuttingDown: return "shutting_down"
        case .auditUnavailable: return "audit_unavailable"
        case .kernel, .holder, .storage: return "internal"
        default: return nil
        }
    }
}

/// A running member of a full capacity group, and who holds it.
public struct GroupMember: Sendable, Equatable {
    public let service: String
    public let cost: Int
    public let leases: [LeaseInfo]
}
