import Posix

/// Why a lifecycle operation was refused or failed. The API maps each case to a status.
public enum LifecycleError: Error, Sendable, CustomStringConvertible {
    case invalidName(String)
    case invalidField(DefinitionError)
    case unknownService(String)
    case unknownLease(String)
    case serviceRunning(String)
    case leaseNotRenewable(String)
    case clientNotRunning(Int32)
    case tooManyLeases(limit: Int)
    case startFailed(service: String, reason: String)
    case kernel(String)
    case holder(String)
    case storage(String)
    case shuttingDown

    public var description: String {
        switch self {
        case .invalidName(let name): return "invalid service name \(name.debugDescription): must match ^[a-z0-9][a-z0-9._-]{0,62}$"
        case .invalidField(let error): return error.description
        case .unknownService(let name): return "no service named \(name)"
        case .unknownLease(let id): return "no live lease \(id)"
        case .serviceRunning(let name): return "service \(name) is running; it can be redefined once stopped"
        case .leaseNotRenewable(let id): return "lease \(id) has no ttl_ms; it ends with its client or on release"
        case .clientNotRunning(let pid): return "client_pid \(pid) is not a running process"
        case .tooManyLeases(let limit): return "lease limit (\(limit)) reached"
        case let .startFailed(service, reason): return "service \(service) did not become ready: \(reason)"
        case .kernel(let message): return "kernel: \(message)"
        case .holder(let message): return "lease holder: \(message)"
        case .storage(let message): return "audit store: \(message)"
        case .shuttingDown: return "procrefd is shutting down"
        }
    }
}
