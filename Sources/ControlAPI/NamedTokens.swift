import AuditStore
import FoundationEssentials
import Lifecycle
import Posix
import Wire

/// `POST /v1/tokens`: `{"name": "ci", "role": "leaser", "services": ["db"]}`.
struct TokenRequest: Decodable {
    let name: String
    let role: String
    let services: [String]

    enum CodingKeys: String, CodingKey, CaseIterable { case name, role, services }

    init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases.map(\.rawValue), at: nil)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        role = try c.decode(String.self, forKey: .role)
        services = try c.decodeIfPresent([String].self, forKey: .services) ?? []
    }
}

/// Making and revoking named tokens: each change is recorded (`token.created`,
/// `token.revoked`) and takes effect at once.
enum NamedTokens {
    /// Makes a token; returns its record and the secret, which is shown this once.
    static func create(_ request: TokenRequest, by actor: Principal, store: AuditStore, book: TokenBook) async throws -> (TokenRecord, String) {
        guard ServiceName.isValid(request.name), !["admin", "read", "anonymous"].contains(request.name) else {
            throw Problem.invalidField("name", "^[a-z0-9][a-z0-9._-]{0,62}$, and not admin, read or anonymous (built in)")
        }
        guard let role = Role(name: request.role) else { throw Problem.invalidField("role", "reader, leaser, operator or admin") }
        if let bad = request.services.first(where: { !ServiceName.isValid($0) }) { throw Problem.invalidField("services", "\(bad) is not a service name") }
        guard role == .leaser || request.services.isEmpty else { throw Problem.invalidField("services", "only a leaser's token names services") }
        let secret = Files.randomHex(byteCount: 32)
        let record = TokenRecord(
            name: request.name, role: role.description, services: request.services, hash: TokenRecord.hash(ofSecret: Array(secret.utf8)),
            createdAt: Timestamp.format(Date()), createdBy: actor.description)
        let exists = try store.read { try $0.tokens().contains { $0.name == request.name } }
        guard !exists else {
            throw Problem(status: 409, slug: "token-exists", title: "Token Exists", detail: "a token named \(request.name) exists or existed (names are not reused)")
        }
        try await store.submit { tx in
            try tx.insertToken(record)
            try tx.append(NewEvent(.tokenCreated, actor: actor, detail: [
                "name": .string(record.name), "role": .string(record.role), "services": .string(record.services.joined(separator: ",")),
            ]))
        }.committed()
        book.add(record, role: role)
        return (record, secret)
    }

    /// Revokes a live token: its next request gets 401.
    static func revoke(_ name: String, by actor: Principal, store: AuditStore, book: TokenBook) async throws -> TokenRecord {
        let time = Timestamp.format(Date())
        let revoked = try await store.submit { tx in
            guard try tx.revokeToken(name: name, at: time) else { return false }
            try tx.append(NewEvent(.tokenRevoked, actor: actor, detail: ["name": .string(name)]))
            return true
        }.committed()
        guard revoked, let record = try store.read({ try $0.tokens() }).first(where: { $0.name == name }) else {
            throw Problem(status: 404, slug: "unknown-token", title: "Unknown Token", detail: "no live token named \(name)")
        }
        book.revoke(name: name)
        return record
    }
}

/// A token as the API shows it: never its hash; its secret only when just made.
struct TokenPayload: HandWrittenJSON {
    let record: TokenRecord
    let secret: String?

    init(_ record: TokenRecord, secret: String?) {
        self.record = record
        self.secret = secret
    }

    var object: JSONObjectText {
        var object = JSONObjectText()
        object.add("name", record.name)
        object.add("role", record.role)
        object.add("services", json: "[" + record.services.map(JSONText.quoted).joined(separator: ",") + "]")
        object.add("created_at", record.createdAt)
        object.add("created_by", record.createdBy)
        object.add("revoked_at", record.revokedAt)
        if let secret { object.add("secret", secret) }
        return object
    }

    var jsonText: String { object.text }
}

struct TokenListPayload: HandWrittenJSON {
    let tokens: [TokenPayload]
    var jsonText: String { #"{"tokens":["# + tokens.map(\.jsonText).joined(separator: ",") + "]}" }
}
