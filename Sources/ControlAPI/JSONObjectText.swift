import Wire

/// A flat JSON object built by hand, keys written in sorted order (as the API's encoder
/// does). Values are JSON text already (see the `add` overloads).
public struct JSONObjectText {
    private var fields: [(key: String, value: String)] = []

    public init() {}

    public mutating func add(_ key: String, _ value: String?) { fields.append((key, value.map(JSONText.quoted) ?? "null")) }
    public mutating func add(_ key: String, _ value: Int64?) { fields.append((key, value.map { "\($0)" } ?? "null")) }
    public mutating func add(_ key: String, _ value: Int) { fields.append((key, "\(value)")) }
    public mutating func add(_ key: String, _ value: Bool) { fields.append((key, value ? "true" : "false")) }
    /// `value` must be valid JSON text.
    public mutating func add(_ key: String, json value: String) { fields.append((key, value)) }

    public var text: String {
        "{" + fields.sorted { $0.key < $1.key }.map { JSONText.quoted($0.key) + ":" + $0.value }.joined(separator: ",") + "}"
    }
}
