import FoundationEssentials
import SQLite
import Wire

/// Which events to read: every set field must match. Cursors: `after` (ascending) and
/// `before` (descending) are event ids.
public struct EventFilter: Sendable, Equatable {
    public enum Order: String, Sendable, CaseIterable {
        case asc
        case desc
    }

    public var service: String?
    /// Exact kinds (`lease.acquired`) or prefixes (`lease.*`, any known kind it covers); any
    /// of them matches.
    public var kinds: [String] = []
    public var lease: String?
    public var pid: Int32?
    /// Events a user caused (its uid, as the kernel said).
    public var uid: UInt32?
    /// RFC 3339 bounds on the event time (inclusive since, exclusive until).
    public var since: Date?
    public var until: Date?
    public var after: Int64 = 0
    public var before: Int64?
    public var order: Order = .asc
    public var limit: Int = 100

    public init(service: String? = nil, kinds: [String] = [], lease: String? = nil, after: Int64 = 0, limit: Int = 100) {
        self.service = service
        self.kinds = kinds
        self.lease = lease
        self.after = after
        self.limit = limit
    }

    /// A kind filter: lower-case words joined by dots, optionally ending in `.*`.
    /// A kind that exists (`lease.acquired`), or the prefix of a family that does
    /// (`lease.*`): a misspelt kind is an error, never an empty page.
    public static func isValidKind(_ kind: String) -> Bool {
        guard kind.hasSuffix(".*") else { return EventKind(rawValue: kind) != nil }
        let family = kind.dropLast(1)  // "lease."
        return !family.dropLast().isEmpty && EventKind.allCases.contains { $0.rawValue.hasPrefix(family) }
    }
}

extension StoreReader {
    /// Events matching `filter`, in `filter.order`, at most `filter.limit`. Each filter has
    /// an index (service, kind, lease, pid, time; all with id).
    public func events(_ filter: EventFilter) throws -> [Event] {
        var clauses: [String] = []
        var arguments: StatementArguments = []
        func add(_ clause: String, _ value: (any DatabaseValueConvertible)?) {
            guard let value else { return }
            clauses.append(clause)
            arguments += [value]
        }
        add("id > ?", filter.after > 0 ? filter.after : nil)
        add("id < ?", filter.before)
        add("service = ?", filter.service)
        add("lease = ?", filter.lease)
        add("pid = ?", filter.pid)
        add("by_uid = ?", filter.uid.map { Int64($0) })
        add("time >= ?", filter.since.map(Timestamp.format))
        add("time < ?", filter.until.map(Timestamp.format))
        let direction = filter.order == .asc ? "ASC" : "DESC"
        let sql: String
        if filter.kinds.isEmpty {
            let whereClause = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            sql = "SELECT * FROM events \(whereClause) ORDER BY id \(direction) LIMIT ?"
            arguments += [filter.limit]
        } else {
            // One branch per kind, each walking the (kind, id) index in order and stopping at
            // the limit; merged and cut again. A single `kind IN (...)` would make SQLite either
            // scan the table or sort every match, which is slow on a large log.
            let kinds = Self.expand(filter.kinds)
            guard !kinds.isEmpty else { return [] }
            let base = clauses.map { " AND " + $0 }.joined()
            var branches: [String] = []
            var branchArguments: StatementArguments = []
            for kind in kinds {
                branches.append("SELECT * FROM (SELECT * FROM events WHERE kind = ?\(base) ORDER BY id \(direction) LIMIT ?)")
                branchArguments += [kind]
                branchArguments += arguments
                branchArguments += [filter.limit]
            }
            sql = "SELECT * FROM (\(branches.joined(separator: " UNION ALL "))) ORDER BY id \(direction) LIMIT ?"
            arguments = branchArguments
            arguments += [filter.limit]
        }
        let decoder = JSONDecoder()
        return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
            let detailText: String = try row["detail"]
            let detail = (try? decoder.decode([String: DetailValue].self, from: Data(detailText.utf8))) ?? [:]
            return try Event(
                id: row["id"], time: row["time"], kind: row["kind"], service: row["service"],
                lease: row["lease"], pid: row["pid"], actor: row["actor"], detail: detail, by: Self.principal(row),
                hash: (row["hash"] as Data?).map { data in AuditChain.hex(Array(data)) })
        }
    }

    /// Who caused the event in `row` (its `by_*` columns).
    static func principal(_ row: Row) -> Principal {
        Principal(
            kind: (row["by_kind"] as String?).flatMap(Principal.Kind.init(rawValue:)) ?? .daemon, uid: row["by_uid"],
            user: row["by_user"], pid: row["by_pid"], comm: row["by_comm"], name: row["by_name"])
    }

    /// Exact kinds as given; a prefix (`lease.*`) becomes every known kind it covers.
    static func expand(_ kinds: [String]) -> [String] {
        var result: [String] = []
        for kind in kinds {
            if kind.hasSuffix(".*") {
                let prefix = String(kind.dropLast(1))
                result += EventKind.allCases.map(\.rawValue).filter { $0.hasPrefix(prefix) }
            } else {
                result.append(kind)
            }
        }
        var seen = Set<String>()
        return result.filter { seen.insert($0).inserted }
    }

    /// The highest event id, 0 when empty.
    public func lastEventID() throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(id), 0) FROM events") ?? 0
    }
}
