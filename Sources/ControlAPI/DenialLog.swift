import AuditStore
import Posix
import Lifecycle
import Synchronization

/// Records refusals of a role or a service as `access.denied`, at most one per principal
/// per second (the rest are counted into the next record), so a caller who retries in a
/// loop cannot flood the audit log.
final class DenialLog: Sendable {
    private let store: AuditStore
    private struct Pending {
        var second: Int64
        var folded: Int
    }
    private let last = Mutex<[String: Pending]>([:])

    init(store: AuditStore) { self.store = store }

    /// `what` was refused to `principal`, for `reason`.
    func record(_ principal: Principal, _ what: String, _ reason: String, service: String? = nil) {
        let key = principal.description
        let second = monotonicMilliseconds() / 1_000
        let folded = last.withLock { table -> Int? in
            if table.count > 10_000 { table.removeAll() }  // bounded: one entry per recent caller
            if var entry = table[key], entry.second == second {
                entry.folded += 1
                table[key] = entry
                return nil
            }
            let folded = table[key]?.folded ?? 0
            table[key] = Pending(second: second, folded: 0)
            return folded
        }
        guard let folded else { return }
        var detail: [String: DetailValue] = ["request": .string(what), "reason": .string(reason)]
        if folded > 0 { detail["folded"] = .int(Int64(folded)) }
        let event = NewEvent(.accessDenied, service: service, actor: principal, detail: detail)
        let write = store.submit { tx in try tx.append(event) }
        Task { _ = try? await write.committed() }
    }
}
