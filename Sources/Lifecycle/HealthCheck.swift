import FoundationEssentials
import Wire

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
        // Control characters and spaces would let the URL write its own request lines
        // (header injection into the health request).
        guard url.hasPrefix("http://"), url.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else { return nil }
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
