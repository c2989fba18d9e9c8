import AuditStore

/// Tests name principals by a word (`actor: "t"`): a daemon principal of that name.
extension Principal: ExpressibleByStringLiteral {
    public init(stringLiteral name: String) { self.init(kind: .daemon, name: name) }
}
