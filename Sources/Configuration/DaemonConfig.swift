import AuditStore
import Daemon
import FoundationEssentials
import Lifecycle
import Posix
import TOMLKit
import Wire

/// The `procrefd serve --config FILE` file (TOML). Every key is optional; command-line options
/// override it; unknown keys are errors (a misspelt key must not be ignored).
public struct DaemonConfig: Sendable, Equatable {
    public var listen: String?
    public var port: UInt16?
    /// Octal permission bits of the Unix socket: 0600 (default) or 0660.
    public var socketMode: UInt32?
    /// Group given the Unix socket (with socket_mode "0660": that group may use it).
    public var socketGroup: String?
    /// Where the Unix socket is, when not in the state dir (absolute).
    public var socketPath: String?
    public var durability: Durability?
    public var onExit: ShutdownMode?
    public var defaultTTLMs: Int64?
    public var limits = Limits()
    public var audit = Audit()
    public var logs = Logs()
    public var security = Security()
    /// `[access]`: who may do what over the Unix socket; nil without the table (the
    /// socket's owner and group are admin, as before).
    public var access: AccessRules?
    public var services: [String: ServiceDefinition] = [:]
    /// Capacity groups (`[groups.NAME] capacity`), applied at a reload like services.
    public var groups: [String: Int] = [:]

    /// `[security]`.
    public struct Security: Sendable, Equatable {
        /// GETs over TCP (but /v1/health) need a token: the admin one, or STATE/read-token.
        public var tcpReadsNeedToken = false
        /// The reads that answer over TCP without a token (names of `readScopes`); nil: the
        /// defaults (status, metrics, services), or none with `tcpReadsNeedToken`.
        public var tcpOpenReads: [String]?
        /// Host names besides the loopback ones that requests may name in `Host`.
        public var allowedHosts: [String] = []
        /// When set, API-defined services (and their exec health checks) may only run these
        /// programs (absolute paths after PATH lookup). Config-file services are not limited.
        public var apiPrograms: [String]?
        /// The users API-defined services may run as (`user`); none when empty. Config-file
        /// services may name any.
        public var apiUsers: [String] = []
        /// Code-loading environment keys (`LD_LIBRARY_PATH`, …) API services may still set
        /// when confined.
        public var apiEnvAllow: [String] = []
        public init() {}

        /// The rules for services defined over the API.
        public var confinement: APIConfinement { APIConfinement(programs: apiPrograms, users: apiUsers, envAllow: apiEnvAllow) }
    }

    /// `[logs]`: services' logs are rotated past `maxBytes` (0: never), `keep` kept; a
    /// service's `log_max_bytes` and `log_keep` win.
    public struct Logs: Sendable, Equatable {
        public var maxBytes = 10 << 20
        public var keep = 3
        public init() {}
    }

    /// `[audit]`: how long events are kept, and how often pruning runs. By default 90 days
    /// and 10 million events: a new install must not fill a disk by itself.
    public struct Audit: Sendable, Equatable {
        public var retention = RetentionPolicy(maxAgeDays: 90, maxEvents: 10_000_000)
        public var pruneIntervalMs = 60_000
        /// How often the hash chain's head is written to procrefd's own log (the journal).
        public var anchorIntervalMs = 600_000
        public init() {}
    }

    public struct Limits: Sendable, Equatable {
        public var maxLeases: Int?
        public var maxLeasesPerService: Int?
        /// Per user (uid on the socket, token over TCP); by default, with [access], the
        /// per-service limit.
        public var maxLeasesPerUser: Int?
        public var maxBodyBytes: Int?
        public var connectionLimit: Int?
        public var perIPConnectionLimit: Int?
        public var acquireTimeoutMs: Int?
        public var maxServices: Int?
        public var idempotencyWindowMs: Int?
        /// The longest a long-poll (`wait_ms`) is held; it then answers with what it has.
        public var maxWaitMs: Int?
        /// Event streams, log follows and long-polls open at once.
        public var maxStreams: Int?
        public init() {}
    }

    public init() {}

    /// What `[security] tcp_open_reads` may name (ControlAPI's `ReadScope.openable`).
    public static let openableReads = ["status", "metrics", "services", "events", "logs"]

    /// Why a file could not be read, in words (`localizedDescription` needs Foundation).
    static func readFailure(_ error: Error) -> String {
        switch (error as? CocoaError)?.code {
        case .fileReadNoSuchFile?: return "no such file"
        case .fileReadNoPermission?: return "permission denied"
        case .fileReadInapplicableStringEncoding?: return "not UTF-8 text"
        default: return String(describing: error)
        }
    }

    /// Reads and checks a config file. Errors name the file, and the line or the key.
    public static func load(path: String) throws(ConfigError) -> DaemonConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigError(path: path, message: "cannot read: \(Self.readFailure(error))")
        }
        return try parse(text, path: path)
    }

    /// Every key the file may have, by table: "" for the top level, "limits", …,
    /// "groups.NAME" and "services.NAME" for the tables under those (procrefd.toml(5) lists
    /// exactly these; a test compares them).
    public static var acceptedKeys: [String: [String]] {
        let tables = ["limits", "audit", "logs", "security", "access", "groups", "services"]
        return [
            "": ConfigFile.CodingKeys.allCases.map(\.rawValue).filter { !tables.contains($0) },
            "limits": LimitsFile.CodingKeys.allCases.map(\.rawValue),
            "audit": AuditFile.CodingKeys.allCases.map(\.rawValue),
            "logs": LogsFile.CodingKeys.allCases.map(\.rawValue),
            "security": SecurityFile.CodingKeys.allCases.map(\.rawValue),
            "access": AccessFile.CodingKeys.allCases.map(\.rawValue),
            "groups.NAME": GroupFile.CodingKeys.allCases.map(\.rawValue),
            "services.NAME": ServiceDefinition.acceptedKeys,
        ]
    }

    public static func parse(_ text: String, path: String = "<config>") throws(ConfigError) -> DaemonConfig {
        try decode(ConfigFile.self, from: text, path: path).resolved(path: path)
    }

    /// The keys whose new value only a restart can apply (the listeners, durability, the
    /// shutdown mode), that differ between `running` and this file; keys in `ignoring` (set
    /// by command-line flags, which win over the file) are left out.
    public func restartOnlyChanges(from running: DaemonConfig, ignoring: Set<String> = []) -> [String] {
        let keys: [(String, Bool)] = [
            ("listen", listen != running.listen), ("port", port != running.port),
            ("socket_mode", socketMode != running.socketMode), ("socket_group", socketGroup != running.socketGroup),
            ("socket_path", socketPath != running.socketPath),
            ("durability", durability != running.durability), ("on_exit", onExit != running.onExit),
            ("limits.max_body_bytes", limits.maxBodyBytes != running.limits.maxBodyBytes),
            ("limits.connection_limit", limits.connectionLimit != running.limits.connectionLimit),
            ("limits.per_ip_connection_limit", limits.perIPConnectionLimit != running.limits.perIPConnectionLimit),
        ]
        return keys.filter { $0.1 && !ignoring.contains($0.0) }.map(\.0)
    }

    /// One service definition in TOML: the keys of a `[services.NAME]` table, at the top
    /// level (`procrefd service define NAME --file def.toml`).
    public static func parseDefinition(_ text: String, path: String) throws(ConfigError) -> ServiceDefinition {
        try decode(ServiceDefinition.self, from: text, path: path)
    }

    private static func decode<T: Decodable>(_ type: T.Type, from text: String, path: String) throws(ConfigError) -> T {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw ConfigError(path: path, message: "line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw ConfigError(path: path, message: "\(error)")
        }
        do { return try TOMLDecoder().decode(T.self, from: table) } catch let error as DefinitionError {
            throw ConfigError(path: path, message: error.description)
        } catch let DecodingError.keyNotFound(_, context), let DecodingError.valueNotFound(_, context),
            let DecodingError.typeMismatch(_, context), let DecodingError.dataCorrupted(context)
        {
            throw ConfigError(path: path, message: "\(Self.path(context)): \(context.debugDescription)")
        } catch {
            throw ConfigError(path: path, message: "\(error)")
        }
    }

    private static func path(_ context: DecodingError.Context) -> String {
        context.codingPath.map(\.stringValue).joined(separator: ".")
    }
}

/// A config file that cannot be used, and why.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String
    public var description: String { "config \(path): \(message)" }
}

/// The file's literal shape, before checks.
private struct ConfigFile: Decodable {
    var listen: String?
    var port: Int?
    var socketMode: String?
    var socketGroup: String?
    var socketPath: String?
    var durability: String?
    var onExit: String?
    var defaultTTLMs: Int64?
    var limits: LimitsFile?
    var audit: AuditFile?
    var logs: LogsFile?
    var security: SecurityFile?
    var access: AccessFile?
    var services: [String: ServiceDefinition]?
    var groups: [String: Strict<GroupFile>]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case listen, port, durability, limits, audit, logs, security, services, access, groups
        case socketMode = "socket_mode"
        case socketGroup = "socket_group"
        case socketPath = "socket_path"
        case onExit = "on_exit"
        case defaultTTLMs = "default_ttl_ms"
    }

    init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases.map(\.rawValue), at: nil)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        listen = try c.decodeIfPresent(String.self, forKey: .listen)
        port = try c.decodeIfPresent(Int.self, forKey: .port)
        socketMode = try c.decodeIfPresent(String.self, forKey: .socketMode)
        socketGroup = try c.decodeIfPresent(String.self, forKey: .socketGroup)
        socketPath = try c.decodeIfPresent(String.self, forKey: .socketPath)
        durability = try c.decodeIfPresent(String.self, forKey: .durability)
        onExit = try c.decodeIfPresent(String.self, forKey: .onExit)
        defaultTTLMs = try c.decodeIfPresent(Int64.self, forKey: .defaultTTLMs)
        limits = try c.decodeIfPresent(Strict<LimitsFile>.self, forKey: .limits)?.table
        audit = try c.decodeIfPresent(Strict<AuditFile>.self, forKey: .audit)?.table
        logs = try c.decodeIfPresent(Strict<LogsFile>.self, forKey: .logs)?.table
        access = try c.decodeIfPresent(Strict<AccessFile>.self, forKey: .access)?.table
        security = try c.decodeIfPresent(Strict<SecurityFile>.self, forKey: .security)?.table
        services = try c.decodeIfPresent([String: ServiceDefinition].self, forKey: .services)
        groups = try c.decodeIfPresent([String: Strict<GroupFile>].self, forKey: .groups)
    }

    func resolved(path: String) throws(ConfigError) -> DaemonConfig {
        func fail(_ message: String) -> ConfigError { ConfigError(path: path, message: message) }
        var config = DaemonConfig()
        config.listen = listen
        if let port {
            guard (0...65535).contains(port) else { throw fail("port: must be within 0...65535") }
            config.port = UInt16(port)
        }
        if let socketMode {
            guard let mode = UInt32(socketMode.hasPrefix("0o") ? String(socketMode.dropFirst(2)) : socketMode, radix: 8),
                mode == 0o600 || mode == 0o660 || mode == 0o666
            else { throw fail("socket_mode: \"0600\", \"0660\" or (with [access]) \"0666\"") }
            // Everyone may connect: then the peer's credentials and [access] must decide.
            guard mode != 0o666 || access != nil else {
                throw fail("socket_mode: \"0666\" only with an [access] table (without one, whoever opens the socket is admin)")
            }
            config.socketMode = mode
        }
        config.socketGroup = socketGroup
        if let socketPath {
            // sockaddr_un holds 107 bytes of path.
            guard socketPath.hasPrefix("/"), !socketPath.hasSuffix("/"), socketPath.utf8.count < 108, !socketPath.utf8.contains(0) else {
                throw fail("socket_path: an absolute path of a socket (under 108 bytes)")
            }
            config.socketPath = socketPath
        }
        if let durability {
            guard let value = Durability(rawValue: durability) else { throw fail("durability: \"normal\" or \"full\"") }
            config.durability = value
        }
        if let onExit {
            guard let value = ShutdownMode(rawValue: onExit) else { throw fail("on_exit: \"drain\" or \"handoff\"") }
            config.onExit = value
        }
        if let defaultTTLMs {
            guard CoordinatorConfig.ttlRange.contains(defaultTTLMs) else { throw fail("default_ttl_ms: must be within \(CoordinatorConfig.ttlRange)") }
            config.defaultTTLMs = defaultTTLMs
        }
        if let limits { config.limits = try limits.resolved(fail) }
        if let audit { config.audit = try audit.resolved(fail) }
        if let access {
            do {
                config.access = AccessRules(
                    admins: try AccessSubject.parse(access.admins ?? [], field: "access.admins"),
                    operators: try AccessSubject.parse(access.operators ?? [], field: "access.operators"),
                    readers: try AccessSubject.parse(access.readers ?? [], field: "access.readers"))
            } catch {
                throw fail(error.description)
            }
        }
        if let maxBytes = logs?.maxBytes {
            guard maxBytes == 0 || ServiceDefinition.logMaxBytesRange.contains(maxBytes) else {
                throw fail("logs.max_bytes: 0 (never rotate) or within \(ServiceDefinition.logMaxBytesRange)")
            }
            config.logs.maxBytes = maxBytes
        }
        if let keep = logs?.keep {
            guard ServiceDefinition.logKeepRange.contains(keep) else { throw fail("logs.keep: must be within \(ServiceDefinition.logKeepRange)") }
            config.logs.keep = keep
        }
        if let security {
            config.security.tcpReadsNeedToken = security.tcpReadsNeedToken ?? false
            if let open = security.tcpOpenReads {
                guard security.tcpReadsNeedToken != true else {
                    throw fail("security.tcp_open_reads: not with tcp_reads_need_token = true, which closes every read")
                }
                if let unknown = open.first(where: { !DaemonConfig.openableReads.contains($0) }) {
                    throw fail("security.tcp_open_reads: unknown read \"\(unknown)\" (one of \(DaemonConfig.openableReads.joined(separator: ", ")))")
                }
                config.security.tcpOpenReads = open
            }
            for host in security.allowedHosts ?? [] {
                guard !host.isEmpty, host.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "@") }) else {
                    throw fail("security.allowed_hosts: \(host.debugDescription) is not a host name (no scheme, path or spaces)")
                }
            }
            config.security.allowedHosts = security.allowedHosts ?? []
            if let programs = security.apiPrograms {
                guard programs.allSatisfy({ $0.hasPrefix("/") }) else { throw fail("security.api_programs: absolute paths only") }
                config.security.apiPrograms = programs
            }
            for user in security.apiUsers ?? [] where Accounts.user(user) == nil {
                throw fail("security.api_users: no such user: \(user)")
            }
            config.security.apiUsers = security.apiUsers ?? []
            for key in security.apiEnvAllow ?? [] where !APIConfinement.loadsCode(key) {
                throw fail("security.api_env_allow: \(key) is allowed anyway (list only keys that load code, such as LD_LIBRARY_PATH)")
            }
            config.security.apiEnvAllow = security.apiEnvAllow ?? []
        }
        for (name, group) in (groups ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard ServiceName.isValid(name) else { throw fail("groups.\(name): invalid name (^[a-z0-9][a-z0-9._-]{0,62}$)") }
            guard (1...1_000_000_000).contains(group.table.capacity) else { throw fail("groups.\(name).capacity: must be within 1...1000000000") }
            config.groups[name] = group.table.capacity
        }
        do { config.services = try ConfigTables.checked(services ?? [:]) } catch { throw fail(error.description) }
        return config
    }
}
