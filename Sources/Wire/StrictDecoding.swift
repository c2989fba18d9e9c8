/// A field of a request, a stored definition or a config file that is not acceptable.
public struct DefinitionError: Error, Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let message: String
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }
    public var description: String { "\(field): \(message)" }
}

/// Any key, to list what a JSON or TOML object holds, or to read a key by name.
public struct AnyCodingKey: CodingKey {
    public let stringValue: String
    public let intValue: Int? = nil
    public init(_ name: String) { stringValue = name }
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { return nil }
}

/// Throws for a key the type does not know: a misspelt field must not be ignored silently.
public func rejectUnknownKeys(in decoder: Decoder, allowed: [String], at prefix: String?) throws {
    let container = try decoder.container(keyedBy: AnyCodingKey.self)
    if let unknown = container.allKeys.map(\.stringValue).first(where: { !allowed.contains($0) }) {
        throw DefinitionError(field: prefix.map { "\($0).\(unknown)" } ?? unknown, message: "unknown field")
    }
}

/// A table whose every field is optional and decoded by its synthesized `init(from:)`; decode
/// it through `Strict` so that a key its `CodingKeys` do not name is refused.
public protocol StrictTable: Decodable {
    associatedtype CodingKeys: CodingKey, CaseIterable
}

/// Decodes `Table` after refusing unknown keys, named under the key the table stands at
/// (`limits.max_leasez: unknown field`).
public struct Strict<Table: StrictTable>: Decodable {
    public let table: Table

    public init(from decoder: Decoder) throws {
        let allowed = Table.CodingKeys.allCases.map(\.stringValue)
        try rejectUnknownKeys(in: decoder, allowed: allowed, at: decoder.codingPath.last?.stringValue)
        table = try Table(from: decoder)
    }
}
