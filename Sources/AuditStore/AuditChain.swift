import Crypto
import FoundationEssentials
import SQLite
import Wire

/// The audit log's hash chain: each event stores `SHA-256(previous hash ‖ canonical bytes)`,
/// computed in the transaction that appends it, so an edit made through the database file
/// (a changed, removed or inserted event) breaks every later link. The chain begins at the
/// anchor (`audit_chain`): the last event before the chain existed, with 32 zero bytes, later
/// the last event retention removed, with its hash.
public enum AuditChain {
    static let zero = [UInt8](repeating: 0, count: 32)

    /// An event's canonical bytes: its stored columns, in order, as one JSON array (strings
    /// quoted as `JSONText` writes them, `detail` as the stored text).
    static func canonical(
        id: Int64, time: String, kind: String, service: String?, lease: String?, pid: Int64?, actor: String, detail: String,
        by: Principal
    ) -> [UInt8] {
        // Written byte by byte: it runs for every event appended.
        var out: [UInt8] = []
        out.reserveCapacity(160 + detail.utf8.count)
        let comma = UInt8(ascii: ",")
        out.append(UInt8(ascii: "["))
        number(id, &out)
        out.append(comma); text(time, &out)
        out.append(comma); text(kind, &out)
        out.append(comma); text(service, &out)
        out.append(comma); text(lease, &out)
        out.append(comma); number(pid, &out)
        out.append(comma); text(actor, &out)
        out.append(comma); text(detail, &out)
        out.append(comma); text(by.kind.rawValue, &out)
        out.append(comma); number(by.uid.map(Int64.init), &out)
        out.append(comma); text(by.user, &out)
        out.append(comma); number(by.pid.map(Int64.init), &out)
        out.append(comma); text(by.comm, &out)
        out.append(comma); text(by.name, &out)
        out.append(UInt8(ascii: "]"))
        return out
    }

    private static func number(_ value: Int64?, _ out: inout [UInt8]) {
        guard let value else { return out.append(contentsOf: [110, 117, 108, 108]) }  // null
        if value < 0 { return out.append(contentsOf: String(value).utf8) }
        // Decimal digits written in place: no String per number.
        var rest = UInt64(value)
        let start = out.count
        repeat {
            out.append(UInt8(truncatingIfNeeded: 0x30 + rest % 10))
            rest /= 10
        } while rest > 0
        out[start...].reverse()
    }

    /// A JSON string literal, as `JSONText.quoted` writes it (escapes only where needed).
    private static func text(_ value: String?, _ out: inout [UInt8]) {
        guard let value else { return out.append(contentsOf: [110, 117, 108, 108]) }
        if value.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
            out.append(contentsOf: JSONText.quoted(value).utf8)
            return
        }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: value.utf8)
        out.append(UInt8(ascii: "\""))
    }

    /// The link after `previous`.
    static func link(_ previous: [UInt8], _ canonical: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        previous.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        canonical.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        return hasher.finalize().withUnsafeBytes { Array($0) }
    }

    /// Lower-case hex, as the anchors are written in the log.
    public static func hex(_ bytes: [UInt8]) -> String {
        // One string per hash, not one per byte: every appended event returns its hash.
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// What a walk of the chain found.
public struct ChainVerification: Sendable, Equatable {
    /// Events whose hash was checked.
    public let checked: Int
    /// The first event whose hash does not match (nil: the chain is whole).
    public let firstBroken: Int64?
    /// Where the chain begins.
    public let anchorID: Int64
    /// The newest event and its hash.
    public let headID: Int64
    public let headHash: String

    public var isIntact: Bool { firstBroken == nil }
}

extension StoreTransaction {
    /// The next event's id and the hash it links to: the newest event's hash, or the
    /// anchor's when the newest event is older than the chain.
    func chainHead() throws -> (nextID: Int64, previous: [UInt8]) {
        if chain.id >= 0, chain.hash.count == 32 { return (chain.id + 1, chain.hash) }
        // AUTOINCREMENT: the next id is past every id ever given, even deleted ones.
        let sequence = try DirectStatement(db.cachedStatement(sql: "SELECT seq FROM sqlite_sequence WHERE name = 'events'")).readInt64() ?? 0
        let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT id, hash FROM events ORDER BY id DESC LIMIT 1"))
        let nextID = max(sequence, row?["id"] ?? 0) + 1
        if let hash: [UInt8] = (row?["hash"] as Data?).map(Array.init), hash.count == 32 { return (nextID, hash) }
        return (nextID, try anchor().hash)
    }

    /// Remembers the head just appended, for the next append.
    func chainAppended(id: Int64, hash: [UInt8]) {
        chain.id = id
        chain.hash = hash
    }

    /// Deletes events `from`...`through` (the oldest ones) and moves the anchor to the last
    /// one deleted: the only deletion the append-only triggers allow, inside this transaction.
    func pruneChain(through last: Int64, from first: Int64) throws {
        let hash = try Row.fetchOne(db, sql: "SELECT hash FROM events WHERE id = ?", arguments: [last]).flatMap { $0["hash"] as Data? }
        try db.execute(sql: "UPDATE audit_chain SET pruning = 1 WHERE id = 1")
        try db.execute(sql: "DELETE FROM events WHERE id BETWEEN ? AND ?", arguments: [first, last])
        // An event older than the chain (no hash) leaves the anchor where it is.
        if let hash {
            try db.execute(
                sql: "UPDATE audit_chain SET anchor_id = ?, anchor_hash = ? WHERE id = 1 AND anchor_id < ?", arguments: [last, hash, last])
        }
        try db.execute(sql: "UPDATE audit_chain SET pruning = 0 WHERE id = 1")
    }

    /// The chain's anchor.
    func anchor() throws -> (id: Int64, hash: [UInt8]) {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT anchor_id, anchor_hash FROM audit_chain WHERE id = 1")) else {
            return (0, AuditChain.zero)
        }
        return try (row["anchor_id"], Array(row["anchor_hash"] as Data))
    }
}

extension StoreReader {
    /// Walks the chain from its anchor to the newest event, recomputing every hash.
    public func verifyChain(batch: Int = 10_000) throws -> ChainVerification {
        let anchorRow = try Row.fetchOne(db, sql: "SELECT anchor_id, anchor_hash FROM audit_chain WHERE id = 1")
        let anchorID: Int64 = anchorRow?["anchor_id"] ?? 0
        var previous = try anchorRow.map { try Array($0["anchor_hash"] as Data) } ?? AuditChain.zero
        var cursor = anchorID
        var checked = 0
        while true {
            let rows = try Row.fetchAll(
                db, sql: "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", arguments: [cursor, batch])
            guard !rows.isEmpty else { break }
            for row in rows {
                let id: Int64 = try row["id"]
                let by = Self.principal(row)
                let pid: Int64? = row["pid"]
                let canonical = try AuditChain.canonical(
                    id: id, time: row["time"], kind: row["kind"], service: row["service"], lease: row["lease"], pid: pid,
                    actor: row["actor"], detail: row["detail"], by: by)
                let expected = AuditChain.link(previous, canonical)
                guard let stored = (row["hash"] as Data?).map(Array.init), stored == expected else {
                    return ChainVerification(checked: checked, firstBroken: id, anchorID: anchorID, headID: cursor, headHash: AuditChain.hex(previous))
                }
                previous = stored
                cursor = id
                checked += 1
            }
        }
        return ChainVerification(checked: checked, firstBroken: nil, anchorID: anchorID, headID: cursor, headHash: AuditChain.hex(previous))
    }

    /// The newest event's id and hash (the chain's head), for anchoring outside the file.
    public func chainHead() throws -> (id: Int64, hash: String)? {
        guard let row = try Row.fetchOne(db, sql: "SELECT id, hash FROM events WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1") else { return nil }
        return try (row["id"], AuditChain.hex(Array(row["hash"] as Data)))
    }
}
