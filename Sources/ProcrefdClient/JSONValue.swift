import FoundationEssentials

/// Any JSON document, for the API's bodies read and written as `Any` (`[String: Any]`,
/// `[Any]`, String, Int, Double, Bool; nil for null) through JSONEncoder and JSONDecoder:
/// JSONSerialization lives in Foundation, and the CLI needs only FoundationEssentials.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case integer(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses a JSON document.
    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    /// The JSON text of `value` (a dictionary, an array, a string, a number, a Bool or nil);
    /// `pretty`: indented, keys sorted.
    public static func encode(_ value: Any?, pretty: Bool = false) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.withoutEscapingSlashes]
        return Array(try encoder.encode(try JSONValue(any: value)))
    }

    /// `value` as JSON; throws for a type JSON has no form for.
    public init(any value: Any?) throws {
        switch value {
        case nil: self = .null
        case let value as JSONValue: self = value
        case let bool as Bool: self = .bool(bool)
        case let integer as any BinaryInteger:
            guard let integer = Int(exactly: integer) else { throw EncodingError.invalidValue(value as Any, .init(codingPath: [], debugDescription: "out of range")) }
            self = .integer(integer)
        case let double as Double: self = .double(double)
        case let string as String: self = .string(string)
        case let array as [Any?]: self = .array(try array.map(JSONValue.init(any:)))
        case let object as [String: Any?]: self = .object(try object.mapValues(JSONValue.init(any:)))
        default:
            throw EncodingError.invalidValue(value as Any, .init(codingPath: [], debugDescription: "\(type(of: value!)) has no JSON form"))
        }
    }

    /// The value as `Any`: objects as `[String: Any]`, arrays as `[Any]`, null as nil.
    public var any: Any? {
        switch self {
        case .null: return nil
        case let .bool(bool): return bool
        case let .integer(integer): return integer
        case let .double(double): return double
        case let .string(string): return string
        case let .array(array): return array.map { $0.any as Any }
        case let .object(object): return object.compactMapValues { $0.any }
        }
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let bool = try? container.decode(Bool.self) {
            self = .bool(bool)
        } else if let integer = try? container.decode(Int.self) {
            self = .integer(integer)
        } else if let double = try? container.decode(Double.self) {
            self = .double(double)
        } else if let string = try? container.decode(String.self) {
            self = .string(string)
        } else if let array = try? container.decode([JSONValue].self) {
            self = .array(array)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case let .bool(bool): try container.encode(bool)
        case let .integer(integer): try container.encode(integer)
        case let .double(double): try container.encode(double)
        case let .string(string): try container.encode(string)
        case let .array(array): try container.encode(array)
        case let .object(object): try container.encode(object)
        }
    }
}
