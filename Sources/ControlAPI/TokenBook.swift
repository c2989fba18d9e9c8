import AuditStore
import Lifecycle
import Synchronization
import Wire

/// The named tokens in force, by the SHA-256 of their secret: loaded at start, changed at
/// once by create and revoke (a revoked token is refused from its next request on).
final class TokenBook: Sendable {
    struct Entry: Sendable {
        let name: String
        let role: Role
        /// A leaser's services.
        let services: Set<String>
    }

    private let byHash: Mutex<[String: Entry]>

    init(_ records: [TokenRecord]) {
        var table: [String: Entry] = [:]
        for record in records where record.revokedAt == nil {
            guard let role = Role(name: record.role) else { continue }
            table[AuditChain.hex(record.hash)] = Entry(name: record.name, role: role, services: Set(record.services))
        }
        byHash = Mutex(table)
    }

    /// The token whose secret was presented, if live.
    func lookup(secret: [UInt8]) -> Entry? {
        let key = AuditChain.hex(TokenRecord.hash(ofSecret: secret))
        return byHash.withLock { $0[key] }
    }

    func add(_ record: TokenRecord, role: Role) {
        byHash.withLock { $0[AuditChain.hex(record.hash)] = Entry(name: record.name, role: role, services: Set(record.services)) }
    }

    func revoke(name: String) {
        byHash.withLock { table in table = table.filter { $0.value.name != name } }
    }
}

extension Role {
    /// A role by its name (`reader`, `leaser`, `operator`, `admin`).
    init?(name: String) {
        guard let role = Role.allCases.first(where: { $0.description == name }) else { return nil }
        self = role
    }
}
