import Wire

/// A flat JSON object built by hand, keys written in sorted order (as the API's encoder
/// does). Values are JSON text already (see the `add` overloads).
public struct JSONObjectText {
    private var fields: [(key: String, value: String)] = []

    public init() {}

    public mutating func add(_ key: String, _ value: String?) { fields.append((key, value.map(JSONText.quoted) ?? "null")) }
    public mutating func add(_ key: String, _ value: Int64?) { fields.append((key, value.map { String($0) } ?? "null")) }
    public mutating func add(_ key: String, _ value: Int) { fields.append((key, String(value))) }
    public mutating func add(_ key: String, _ value: Bool) { fields.append((key, value ? "true" : "false")) }
    /// `value` must be valid JSON text.
    public mutating func add(_ key: String, json value: String) { fields.append((key, value)) }

    public var text: String {
        var out = "{"
        out.reserveCapacity(fields.reduce(2) { $0 + $1.key.utf8.count + $1.value.utf8.count + 4 })
        for (index, field) in fields.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { out += "," }
            out += JSONText.quoted(field.key)
            out += ":"
            out += field.value
        }
        out += "}"
        return out
    }
}
