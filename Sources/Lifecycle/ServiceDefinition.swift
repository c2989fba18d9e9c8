import Foundation

/// How procrefd decides a service is healthy.
public enum HealthCheckKind: Sendable, Equatable {
    /// A TCP connection to host:port succeeds.
    case tcp(host: String, port: Int)
    /// A connection to a Unix socket path succeeds.
    case unix(path: String)
    /// The command exits 0.
    case exec([String])
}

public struct HealthCheck: Sendable, Equatable, Codable {
    public var kind: HealthCheckKind
    public var timeoutMs: Int

    public init(kind: HealthCheckKind, timeoutMs: Int = 1000) {
        self.kind = kind
        self.timeoutMs = timeoutMs
    }

    enum CodingKeys: String, CodingKey {
        case tcp, unix, exec
        case timeoutMs = "timeout_ms"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        timeoutMs = try c.decodeIfPresent(Int.self, forKey: .timeoutMs) ?? 1000
        let given = [CodingKeys.tcp, .unix, .exec].filter { c.contains($0) }
        guard given.count == 1 else {
            throw DefinitionError(field: "health", message: "give exactly one of tcp, unix, exec")
        }
        switch given[0] {
        case .tcp:
            let text = try c.decode(String.self, forKey: .tcp)
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
                (1...65535).contains(port), colon > text.startIndex
            else { throw DefinitionError(field: "health.tcp", message: "expected host:port, got \(text)") }
            var host = String(text[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            kind = .tcp(host: host, port: port)
        case .unix:
            kind = .unix(path: try c.decode(String.self, forKey: .unix))
        default:
            kind = .exec(try c.decode([String].self, forKey: .exec))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(timeoutMs, forKey: .timeoutMs)
        switch kind {
        case let .tcp(host, port): try c.encode(host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)", forKey: .tcp)
        case .unix(let path): try c.encode(path, forKey: .unix)
        case .exec(let argv): try c.encode(argv, forKey: .exec)
        }
    }
}

/// A shared service as defined through `PUT /v1/services/{name}`. The command is an argv
/// array, never a shell string.
public struct ServiceDefinition: Sendable, Equatable, Codable {
    public var start: [String]
    public var env: [String: String]
    public var cwd: String?
    public var health: HealthCheck?
    public var readyTimeoutMs: Int
    public var stopTimeoutMs: Int

    public static let defaultReadyTimeoutMs = 10_000
    public static let defaultStopTimeoutMs = 5_000
    public static let timeoutRange = 1...600_000

    public init(
        start: [String], env: [String: String] = [:], cwd: String? = nil, health: HealthCheck? = nil,
        readyTimeoutMs: Int = defaultReadyTimeoutMs, stopTimeoutMs: Int = defaultStopTimeoutMs
    ) {
        self.start = start
        self.env = env
        self.cwd = cwd
        self.health = health
        self.readyTimeoutMs = readyTimeoutMs
        self.stopTimeoutMs = stopTimeoutMs
    }

    enum CodingKeys: String, CodingKey {
        case start, env, cwd, health
        case readyTimeoutMs = "ready_timeout_ms"
        case stopTimeoutMs = "stop_timeout_ms"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        start = try c.decode([String].self, forKey: .start)
        env = try c.decodeIfPresent([String: String].self, forKey: .env) ?? [:]
        cwd = try c.decodeIfPresent(String.self, forKey: .cwd)
        health = try c.decodeIfPresent(HealthCheck.self, forKey: .health)
        readyTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .readyTimeoutMs) ?? Self.defaultReadyTimeoutMs
        stopTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .stopTimeoutMs) ?? Self.defaultStopTimeoutMs
    }

    /// Checks every field; throws the first problem, naming the field.
    public func validate() throws(DefinitionError) {
        guard let program = start.first, !program.isEmpty else {
            throw DefinitionError(field: "start", message: "must be a non-empty argv array")
        }
        if start.contains(where: { $0.utf8.contains(0) }) {
            throw DefinitionError(field: "start", message: "arguments must not contain NUL")
        }
        for (key, value) in env where key.isEmpty || key.contains("=") || key.utf8.contains(0) || value.utf8.contains(0) {
            throw DefinitionError(field: "env", message: "invalid variable \(key)")
        }
        if let cwd {
            var isDirectory: ObjCBool = false
            guard cwd.hasPrefix("/"), FileManager.default.fileExists(atPath: cwd, isDirectory: &isDirectory),
                isDirectory.boolValue
            else { throw DefinitionError(field: "cwd", message: "must be an existing absolute directory") }
        }
        guard Self.timeoutRange.contains(readyTimeoutMs) else {
            throw DefinitionError(field: "ready_timeout_ms", message: "must be within \(Self.timeoutRange)")
        }
        guard Self.timeoutRange.contains(stopTimeoutMs) else {
            throw DefinitionError(field: "stop_timeout_ms", message: "must be within \(Self.timeoutRange)")
        }
        if let health {
            guard (1...60_000).contains(health.timeoutMs) else {
                throw DefinitionError(field: "health.timeout_ms", message: "must be within 1...60000")
            }
            if case .exec(let argv) = health.kind, argv.first?.isEmpty ?? true {
                throw DefinitionError(field: "health.exec", message: "must be a non-empty argv array")
            }
            if case .unix(let path) = health.kind, !path.hasPrefix("/") {
                throw DefinitionError(field: "health.unix", message: "must be an absolute path")
            }
        }
    }
}

/// A field of a request that is not acceptable.
public struct DefinitionError: Error, Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let message: String
    public var description: String { "\(field): \(message)" }
}

/// Names of services: `^[a-z0-9][a-z0-9._-]{0,62}$`.
public enum ServiceName {
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func lowerOrDigit(_ b: UInt8) -> Bool { (b >= 97 && b <= 122) || (b >= 48 && b <= 57) }
        return lowerOrDigit(bytes[0]) && bytes.dropFirst().allSatisfy { lowerOrDigit($0) || $0 == 46 || $0 == 95 || $0 == 45 }
    }
}
