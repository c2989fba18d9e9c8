import AuditStore
import Daemon
import Lifecycle

/// What `procrefd serve` was given on its command line; each flag overrides the file's key.
public struct CommandLineSettings: Sendable, Equatable {
    /// `HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address (see `ListenAddress`).
    public var listen: String?
    public var port: UInt16?
    public var durability: Durability?
    public var onExit: ShutdownMode?
    public var defaultTTLMs: Int64?

    public init(listen: String? = nil, port: UInt16? = nil, durability: Durability? = nil, onExit: ShutdownMode? = nil, defaultTTLMs: Int64? = nil) {
        self.listen = listen
        self.port = port
        self.durability = durability
        self.onExit = onExit
        self.defaultTTLMs = defaultTTLMs
    }

    /// The file's keys these flags override (a reload leaves them alone).
    public var overriddenKeys: Set<String> {
        let given: [(String, Bool)] = [
            ("listen", listen != nil), ("port", port != nil || listen.flatMap(ListenAddress.split)?.port != nil),
            ("durability", durability != nil), ("on_exit", onExit != nil),
        ]
        return Set(given.filter(\.1).map(\.0))
    }
}

/// The settings `serve` runs with: the command line's, then the file's, then the defaults.
public struct ServeSettings: Sendable, Equatable {
    public static let defaultListen = "127.0.0.1"
    public static let defaultPort: UInt16 = 7683

    public let listen: String
    public let port: UInt16
    public let durability: Durability
    public let onExit: ShutdownMode

    public init(flags: CommandLineSettings, file: DaemonConfig) {
        let given = flags.listen.flatMap(ListenAddress.split)
        listen = given?.host ?? file.listen ?? Self.defaultListen
        port = given?.port ?? flags.port ?? file.port ?? Self.defaultPort
        durability = flags.durability ?? file.durability ?? .normal
        onExit = flags.onExit ?? file.onExit ?? .drain
    }

    /// The core's settings a reload may change, from `file` (a flag wins over its key).
    public static func applyLive(_ file: DaemonConfig, flags: CommandLineSettings, to config: inout CoordinatorConfig) {
        let defaults = CoordinatorConfig(holderExecutable: "", logsDirectory: "", scope: "")
        config.defaultTTLMs = flags.defaultTTLMs ?? file.defaultTTLMs ?? defaults.defaultTTLMs
        config.maxLeases = file.limits.maxLeases ?? defaults.maxLeases
        config.maxLeasesPerService = file.limits.maxLeasesPerService ?? defaults.maxLeasesPerService
        // With [access] many users share the host: by default none may take more than a service's worth.
        config.maxLeasesPerUser = file.limits.maxLeasesPerUser ?? (file.access != nil ? config.maxLeasesPerService : nil)
        config.acquireTimeoutMs = file.limits.acquireTimeoutMs ?? defaults.acquireTimeoutMs
        config.confinement = file.security.confinement
        config.maxServices = file.limits.maxServices ?? defaults.maxServices
        config.idempotencyWindowMs = file.limits.idempotencyWindowMs ?? defaults.idempotencyWindowMs
        (config.logMaxBytes, config.logKeep) = (file.logs.maxBytes, file.logs.keep)
        config.groups = file.groups
    }
}

/// A TCP listen address as `--listen` takes it.
public enum ListenAddress {
    /// `HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address; nil when malformed.
    public static func split(_ text: String) -> (host: String, port: UInt16?)? {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return host.isEmpty ? nil : (host, nil) }
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()) else { return nil }
            return (host, port)
        }
        let colons = text.filter { $0 == ":" }.count
        if colons == 1, let colon = text.firstIndex(of: ":") {
            guard let port = UInt16(text[text.index(after: colon)...]), colon != text.startIndex else { return nil }
            return (String(text[..<colon]), port)
        }
        return text.isEmpty ? nil : (text, nil)  // a name, an IPv4 address, or a bare IPv6 one
    }
}
