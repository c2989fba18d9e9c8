import AuditStore
import Glibc
import Lifecycle
import Posix

/// Whose leases a caller may take, keep and end. Operators and admins: any. Everyone
/// else: only on services whose `lease` list names them, only for a `client_pid` of their
/// own uid, and only their own leases (a refusal is 403, audited as `access.denied`).
struct LeaseAccess: Sendable {
    let coordinator: any LifecycleCore
    let denials: DenialLog

    func checkAcquire(by caller: Caller, service name: String, clientPID: Int32?) throws(Problem) {
        guard !caller.has(.operator) else { return }
        // An unknown service answers 404 from the core, as for anyone.
        guard let definition = try? coordinator.serviceStatus(name).definition else { return }
        guard caller.mayLease(name, definition.lease) else {
            throw deny(caller, "lease \(name)", "\(caller.principal) may not lease service \(name) (not in its lease list)", service: name)
        }
        if let clientPID {
            // A lease bound to another user's process would live as long as they chose.
            guard caller.principal.kind == .peer, let owner = ProcessIdentity.ownerUID(of: clientPID), owner == caller.principal.uid else {
                throw deny(caller, "lease \(name)", "client_pid \(clientPID) is not a process of \(caller.principal)", service: name)
            }
        }
    }

    func checkManage(by caller: Caller, lease id: String, what: String) throws(Problem) {
        guard !caller.has(.operator), let lease = try? coordinator.leaseInfo(id: id) else { return }
        guard caller.mayManage(leaseOf: lease.owner) else {
            throw deny(caller, "\(what) \(id)", "lease \(id) is \(lease.owner)'s; only its owner, an operator or an admin may \(what) it", service: lease.service)
        }
    }

    private func deny(_ caller: Caller, _ what: String, _ reason: String, service: String) -> Problem {
        denials.record(caller.principal, what, reason, service: service)
        return .forbidden(reason)
    }
}
