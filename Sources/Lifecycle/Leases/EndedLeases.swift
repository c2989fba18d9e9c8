import AuditStore
import FoundationEssentials

extension Coordinator {
    /// Deletes the rows of leases that ended before the idempotency window: only a replayed
    /// acquire reads an ended lease's row, and only within that window. Without this the
    /// lease table keeps one row per lease ever granted. Returns how many rows went.
    @discardableResult
    public func pruneEndedLeases(now: Date = Date()) throws(LifecycleError) -> Int {
        let cutoff = now.addingTimeInterval(-Double(config.idempotencyWindowMs) / 1000)
        do { return try context.store.pruneEndedLeases(endedBefore: cutoff) } catch { throw .storage("\(error)") }
    }
}
