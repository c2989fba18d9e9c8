import Foundation
import Posix

/// How procrefd decides a service is healthy.
public enum HealthCheckKind: Sendable, Equatable {
    /// A TCP connection to host:port succeeds, and the listener belongs to the service.
    case tcp(host: String, port: Int)
    /// A connection to a Unix socket path succeeds, and the listener belongs to the service.
    case unix(path: String)
    /// `GET` of an http:// URL answers 2xx.
    case http(HTTPTarget)
    /// The command exits 0.
    case exec([String])
}

/// A parsed `http://host[:port]/path` health URL.
public struct HTTPTarget: Sendable, Equatable {
    public let url: String
    public let host: String
    public let port: Int
    public let path: String

    /// Parses a plain-HTTP URL; nil for anything else.
    public init?(_ url: String) {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" }
        let path = rest.dropFirst(authority.count)
        var host = Substring(authority)
        var port = 80
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()) else { return nil }
                port = p
            } else if !after.isEmpty { return nil }
            host = host[host.index(after: host.startIndex)..<close]
        } else if let colon = host.lastIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]) else { return nil }
            port = p
            host = host[..<colon]
        }
        guard !host.isEmpty, (1...65535).contains(port), !host.contains("@") else { return nil }
        self.url = url
        self.host = String(host)
        self.port = port
        self.path = path.isEmpty ? "/" : String(path)
    }
}

/// A health check, how long one probe may take, and how many failed probes in a row make
/// a running service unhealthy.
public struct HealthCheck: Sendable, Equatable, Codable {
    public var kind: HealthCheckKind
    public var timeoutMs: Int
    /// Consecutive failed probes, `intervalMs` apart, before a running service counts as
    /// unhealthy and is recovered: one dropped connection must not restart a shared service.
    public var failures: Int
    public var intervalMs: Int
    /// A probe that passed this recently covers an acquire (0: probe on every acquire).
    public var freshMs: Int

    public init(kind: HealthCheckKind, timeoutMs: Int = 1000, failures: Int = 3, intervalMs: Int = 100, freshMs: Int = 250) {
        self.kind = kind
        self.timeoutMs = timeoutMs
        self.failures = failures
        self.intervalMs = intervalMs
        self.freshMs = freshMs
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case tcp, unix, http, exec, failures
        case timeoutMs = "timeout_ms"
        case intervalMs = "interval_ms"
        case freshMs = "fresh_ms"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases.map(\.rawValue), at: "health")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = HealthCheck(kind: .exec([]))
        timeoutMs = try c.decodeIfPresent(Int.self, forKey: .timeoutMs) ?? defaults.timeoutMs
        failures = try c.decodeIfPresent(Int.self, forKey: .failures) ?? defaults.failures
        intervalMs = try c.decodeIfPresent(Int.self, forKey: .intervalMs) ?? defaults.intervalMs
        freshMs = try c.decodeIfPresent(Int.self, forKey: .freshMs) ?? defaults.freshMs
        let given = [CodingKeys.tcp, .unix, .http, .exec].filter { c.contains($0) }
        guard given.count == 1 else {
            throw DefinitionError(field: "health", message: "give exactly one of tcp, unix, http, exec")
        }
        switch given[0] {
        case .tcp:
            let text = try c.decode(String.self, forKey: .tcp)
            guard let target = HTTPTarget("http://\(text)/"), !text.contains("/") else {
                throw DefinitionError(field: "health.tcp", message: "expected host:port, got \(text)")
            }
            guard text.hasSuffix(":\(target.port)") else {
                throw DefinitionError(field: "health.tcp", message: "expected host:port, got \(text)")
            }
            kind = .tcp(host: target.host, port: target.port)
        case .unix:
            kind = .unix(path: try c.decode(String.self, forKey: .unix))
        case .http:
            let text = try c.decode(String.self, forKey: .http)
            guard let target = HTTPTarget(text) else {
                throw DefinitionError(field: "health.http", message: "expected http://host[:port]/path, got \(text)")
            }
            kind = .http(target)
        default:
            kind = .exec(try c.decode([String].self, forKey: .exec))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(timeoutMs, forKey: .timeoutMs)
        try c.encode(failures, forKey: .failures)
        try c.encode(intervalMs, forKey: .intervalMs)
        try c.encode(freshMs, forKey: .freshMs)
        switch kind {
        case let .tcp(host, port): try c.encode(host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)", forKey: .tcp)
        case .unix(let path): try c.encode(path, forKey: .unix)
        case .http(let target): try c.encode(target.url, forKey: .http)
        case .exec(let argv): try c.encode(argv, forKey: .exec)
        }
    }
}

/// A shared service as defined through `PUT /v1/services/{name}` or the config file. The
/// command is an argv array, never a shell string.
public struct ServiceDefinition: Sendable, Equatable, Codable {
    public var start: [String]
    public var env: [String: String]
    public var cwd: String?
    /// A forking service's pid file (systemd's Type=forking): the start command must exit 0
    /// once the daemon runs, and the file names the daemon, which becomes the main process.
    public var pidFile: String?
    public var health: HealthCheck?
    public var readyTimeoutMs: Int
    /// Sent to the process group first when stopping (then SIGKILL after stop_timeout_ms).
    public var stopSignal: String
    public var stopTimeoutMs: Int
    /// Grace after the last release before the service is stopped; an acquire in it reuses it.
    public var lingerMs: Int
    /// First delay before restarting a service that died while leased; doubles each time.
    public var restartBackoffMs: Int
    public var restartBackoffMaxMs: Int
    /// Restarts allowed within restart_window_ms before the service is marked failed.
    public var restartLimit: Int
    public var restartWindowMs: Int

    public static let timeoutRange = 1...600_000

    public init(
        start: [String], env: [String: String] = [:], cwd: String? = nil, pidFile: String? = nil, health: HealthCheck? = nil,
        readyTimeoutMs: Int = 10_000, stopSignal: String = "TERM", stopTimeoutMs: Int = 5_000, lingerMs: Int = 0,
        restartBackoffMs: Int = 500, restartBackoffMaxMs: Int = 30_000, restartLimit: Int = 5, restartWindowMs: Int = 60_000
    ) {
        self.start = start
        self.env = env
        self.cwd = cwd
        self.pidFile = pidFile
        self.health = health
        self.readyTimeoutMs = readyTimeoutMs
        self.stopSignal = stopSignal
        self.stopTimeoutMs = stopTimeoutMs
        self.lingerMs = lingerMs
        self.restartBackoffMs = restartBackoffMs
        self.restartBackoffMaxMs = restartBackoffMaxMs
        self.restartLimit = restartLimit
        self.restartWindowMs = restartWindowMs
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case start, env, cwd, health
        case pidFile = "pid_file"
        case readyTimeoutMs = "ready_timeout_ms"
        case stopSignal = "stop_signal"
        case stopTimeoutMs = "stop_timeout_ms"
        case lingerMs = "linger_ms"
        case restartBackoffMs = "restart_backoff_ms"
        case restartBackoffMaxMs = "restart_backoff_max_ms"
        case restartLimit = "restart_limit"
        case restartWindowMs = "restart_window_ms"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases.map(\.rawValue), at: nil)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = ServiceDefinition(start: [])
        start = try c.decode([String].self, forKey: .start)
        env = try c.decodeIfPresent([String: String].self, forKey: .env) ?? [:]
        cwd = try c.decodeIfPresent(String.self, forKey: .cwd)
        pidFile = try c.decodeIfPresent(String.self, forKey: .pidFile)
        health = try c.decodeIfPresent(HealthCheck.self, forKey: .health)
        readyTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .readyTimeoutMs) ?? defaults.readyTimeoutMs
        stopSignal = try c.decodeIfPresent(String.self, forKey: .stopSignal) ?? defaults.stopSignal
        stopTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .stopTimeoutMs) ?? defaults.stopTimeoutMs
        lingerMs = try c.decodeIfPresent(Int.self, forKey: .lingerMs) ?? defaults.lingerMs
        restartBackoffMs = try c.decodeIfPresent(Int.self, forKey: .restartBackoffMs) ?? defaults.restartBackoffMs
        restartBackoffMaxMs = try c.decodeIfPresent(Int.self, forKey: .restartBackoffMaxMs) ?? defaults.restartBackoffMaxMs
        restartLimit = try c.decodeIfPresent(Int.self, forKey: .restartLimit) ?? defaults.restartLimit
        restartWindowMs = try c.decodeIfPresent(Int.self, forKey: .restartWindowMs) ?? defaults.restartWindowMs
    }

    /// The signal number of `stop_signal`.
    public var stopSignalNumber: Int32 { Signals.number(named: stopSignal) ?? SIGTERM }

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
        if let pidFile, !pidFile.hasPrefix("/") || pidFile.utf8.contains(0) {
            throw DefinitionError(field: "pid_file", message: "must be an absolute path")
        }
        let ranges: [(String, Int, ClosedRange<Int>)] = [
            ("ready_timeout_ms", readyTimeoutMs, Self.timeoutRange),
            ("stop_timeout_ms", stopTimeoutMs, Self.timeoutRange),
            ("linger_ms", lingerMs, 0...86_400_000),
            ("restart_backoff_ms", restartBackoffMs, 0...3_600_000),
            ("restart_backoff_max_ms", restartBackoffMaxMs, 0...3_600_000),
            ("restart_limit", restartLimit, 0...1000),
            ("restart_window_ms", restartWindowMs, 1...86_400_000),
        ]
        for (field, value, range) in ranges where !range.contains(value) {
            throw DefinitionError(field: field, message: "must be within \(range)")
        }
        guard Signals.number(named: stopSignal) != nil else {
            throw DefinitionError(field: "stop_signal", message: "one of \(Signals.byName.keys.sorted().joined(separator: ", "))")
        }
        if let health {
            let healthRanges: [(String, Int, ClosedRange<Int>)] = [
                ("timeout_ms", health.timeoutMs, 1...60_000), ("failures", health.failures, 1...100),
                ("interval_ms", health.intervalMs, 0...60_000), ("fresh_ms", health.freshMs, 0...60_000),
            ]
            for (field, value, range) in healthRanges where !range.contains(value) {
                throw DefinitionError(field: "health.\(field)", message: "must be within \(range)")
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

/// Names of services: `^[a-z0-9][a-z0-9._-]{0,62}$`.
public enum ServiceName {
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func lowerOrDigit(_ b: UInt8) -> Bool { (b >= 97 && b <= 122) || (b >= 48 && b <= 57) }
        return lowerOrDigit(bytes[0]) && bytes.dropFirst().allSatisfy { lowerOrDigit($0) || $0 == 46 || $0 == 95 || $0 == 45 }
    }
}
