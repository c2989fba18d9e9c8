import FoundationEssentials
import SQLite
import Wire

/// How long events are kept. nil keeps them forever.
public struct RetentionPolicy: Sendable, Equatable {
    public var maxAgeDays: Int?
    public var maxEvents: Int?
    /// Rows deleted per transaction, so pruning never holds the writer for long.
    public var batchSize = 1_000

    public init(maxAgeDays: Int? = nil, maxEvents: Int? = nil) {
        self.maxAgeDays = maxAgeDays
        self.maxEvents = maxEvents
    }

    public var isEnabled: Bool { maxAgeDays != nil || maxEvents != nil }
}

/// What one pruning pass removed.
public struct PruneResult: Sendable, Equatable {
    public let fromID: Int64
    public let toID: Int64
    public let count: Int

    public init(fromID: Int64, toID: Int64, count: Int) {
        self.fromID = fromID
        self.toID = toID
        self.count = count
    }
}

extension AuditStore {
    /// Deletes events older than the policy allows, oldest first, in small batches, and
    /// records `audit.pruned` with the id range removed. `maxEvents` counts every kind but
    /// audit.pruned, so the record of a pass never triggers the next one.
    /// Returns nil when nothing was due.
    @discardableResult
    public func prune(_ policy: RetentionPolicy, now: Date = Date()) throws -> PruneResult? {
        guard policy.isEnabled else { return nil }
        // Everything below `cutoff` goes: the stricter of the age and count limits.
        let cutoff: Int64 = try read { reader in
            var cutoff: Int64 = 0
            if let days = policy.maxAgeDays {
                let oldest = Timestamp.format(now.addingTimeInterval(-Double(days) * 86_400))
                let firstKept = try Int64.fetchOne(reader.db, sql: "SELECT MIN(id) FROM events WHERE time >= ?", arguments: [oldest])
                let next = try reader.lastEventID() + 1
                cutoff = max(cutoff, firstKept ?? next)
            }
            if let keep = policy.maxEvents {
                // audit.pruned records do not count, so pruning never feeds on its own records.
                let firstKept = try Int64.fetchOne(
                    reader.db, sql: "SELECT id FROM events WHERE kind != 'audit.pruned' ORDER BY id DESC LIMIT 1 OFFSET ?",
                    arguments: [max(0, keep - 1)])
                cutoff = max(cutoff, firstKept ?? 0)
            }
            return cutoff
        }
        guard cutoff > 0 else { return nil }
        var fromID: Int64?
        var toID: Int64 = 0
        var count = 0
        while true {
            let batch: (min: Int64, max: Int64, count: Int)? = try write { tx in
                let ids = try Int64.fetchAll(
                    tx.db, sql: "SELECT id FROM events WHERE id < ? ORDER BY id LIMIT ?", arguments: [cutoff, policy.batchSize])
                guard let first = ids.first, let last = ids.last else { return nil }
                try tx.pruneChain(through: last, from: first)
                return (first, last, ids.count)
            }
            guard let batch else { break }
            fromID = fromID ?? batch.min
            toID = batch.max
            count += batch.count
        }
        guard let fromID else { return nil }
        var detail: [String: DetailValue] = ["from_id": .int(fromID), "to_id": .int(toID), "count": .int(Int64(count))]
        // The new start of the chain: verification begins from this hash.
        let anchor = try read { reader in try Row.fetchOne(reader.db, sql: "SELECT anchor_id, anchor_hash FROM audit_chain WHERE id = 1") }
        if let anchor {
            detail["anchor_id"] = try .int(anchor["anchor_id"])
            detail["anchor_hash"] = try .string(AuditChain.hex(Array(anchor["anchor_hash"] as Data)))
        }
        if let days = policy.maxAgeDays { detail["retention_days"] = .int(Int64(days)) }
        if let keep = policy.maxEvents { detail["retention_max_events"] = .int(Int64(keep)) }
        try append(NewEvent(.auditPruned, detail: detail))
        return PruneResult(fromID: fromID, toID: toID, count: count)
    }
}
