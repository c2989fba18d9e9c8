import FoundationEssentials
import Glibc
import Posix
import Wire

/// A shared service as defined through `PUT /v1/services/{name}` or the config file. The
/// command is an argv array, never a shell string.
public struct ServiceDefinition: Sendable, Equatable, Codable {
    /// The command; empty only for a pure lock or semaphore (`slots` set, nothing to run).
    public var start: [String]
    /// At most this many leases at once; further acquires queue (`wait_ms`) or are refused.
    /// nil: no limit but `limits.max_leases_per_service`.
    public var slots: Int?
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
    /// Who the service runs as, within which limits (`ServiceDefinition+Identity.swift`).
    public var runAs = RunAs()
    /// Its log is rotated past this size (nil: the daemon's `[logs] max_bytes`).
    public var logMaxBytes: Int?
    /// Rotated logs kept (`NAME.log.1` …; nil: the daemon's `[logs] keep`).
    public var logKeep: Int?
    /// Who may take leases on it with `[access]`: users, `group:NAME`, `"*"` (nil: nobody
    /// below operator).
    public var lease: [String]?
    /// Front-door addresses clients connect to (`HOST:PORT`, `unix:PATH`): each open
    /// connection is a reference, and the first starts the service (`procref-door`).
    public var front: [String]?
    /// Where the service itself listens, for the front door to forward to.
    public var upstream: String?
    /// Connections a front door holds while the service starts (default 256).
    public var frontMaxPending: Int?
    /// `proxy` (the default: `procref-door` counts and forwards connections) or `activate`
    /// (the listening sockets are handed to the service at start, as systemd does).
    public var frontMode: String?
    /// `transitions` (the default: only what connections do to the service is recorded) or
    /// `connections` (each connection's open and close too).
    public var frontAudit: String?
    /// Runs instead of the stop signal (`docker stop NAME`); stop_timeout_ms still bounds
    /// the stop, then every process of the service is killed.
    public var stopCommand: [String]?
    /// A one-shot that must exit 0 before each start (a migration); a failure fails the start.
    public var preStart: [String]?
    /// Runs once the service is first healthy (a warm-up); the start is ready when it exits
    /// 0, within ready_timeout_ms, and failed otherwise.
    public var postReady: [String]?
    /// What idle means, once nothing counts it and the linger is over: `stop` (the default)
    /// or `freeze` (its cgroup frozen: warm, using no CPU; the next acquire thaws it).
    public var idle: String?
    /// How long a service stays frozen before it is stopped (default 10 minutes).
    public var freezeMaxMs: Int?
    /// Services this one needs running: each is leased for it before it starts, held by
    /// its main process (`client_pid`), so the kernel gives the reference back when it dies.
    public var requires: [String]?
    /// The capacity group it belongs to (`[groups.NAME]` in the config file), and what it
    /// takes of the group's capacity while it runs (default 1). Not `group`: that is the
    /// Unix group it runs as (`RunAs`).
    public var capacityGroup: String?
    public var cost: Int?

    public static let timeoutRange = 1...600_000

    /// Every key a definition may have (its own and `RunAs`'s), as JSON and TOML spell them.
    public static var acceptedKeys: [String] { CodingKeys.allCases.map(\.rawValue) + RunAs.Keys.allCases.map(\.rawValue) }

    public init(
        start: [String], slots: Int? = nil, env: [String: String] = [:], cwd: String? = nil, pidFile: String? = nil, health: HealthCheck? = nil,
        readyTimeoutMs: Int = 10_000, stopSignal: String = "TERM", stopTimeoutMs: Int = 5_000, lingerMs: Int = 0,
        restartBackoffMs: Int = 500, restartBackoffMaxMs: Int = 30_000, restartLimit: Int = 5, restartWindowMs: Int = 60_000
    ) {
        self.start = start
        self.slots = slots
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
        case start, slots, env, cwd, health
        case pidFile = "pid_file"
        case readyTimeoutMs = "ready_timeout_ms"
        case stopSignal = "stop_signal"
        case stopTimeoutMs = "stop_timeout_ms"
        case lingerMs = "linger_ms"
        case restartBackoffMs = "restart_backoff_ms"
        case restartBackoffMaxMs = "restart_backoff_max_ms"
        case restartLimit = "restart_limit"
        case restartWindowMs = "restart_window_ms"
        case logMaxBytes = "log_max_bytes"
        case logKeep = "log_keep"
        case lease, front, upstream
        case frontMaxPending = "front_max_pending"
        case frontMode = "front_mode"
        case frontAudit = "front_audit"
        case stopCommand = "stop_command"
        case preStart = "pre_start"
        case postReady = "post_ready"
        case idle
        case freezeMaxMs = "freeze_max_ms"
        case requires, cost
        case capacityGroup = "capacity_group"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(start, forKey: .start)
        try c.encodeIfPresent(slots, forKey: .slots)
        try c.encode(env, forKey: .env)
        try c.encodeIfPresent(cwd, forKey: .cwd)
        try c.encodeIfPresent(health, forKey: .health)
        try c.encodeIfPresent(pidFile, forKey: .pidFile)
        try c.encode(readyTimeoutMs, forKey: .readyTimeoutMs)
        try c.encode(stopSignal, forKey: .stopSignal)
        try c.encode(stopTimeoutMs, forKey: .stopTimeoutMs)
        try c.encode(lingerMs, forKey: .lingerMs)
        try c.encode(restartBackoffMs, forKey: .restartBackoffMs)
        try c.encode(restartBackoffMaxMs, forKey: .restartBackoffMaxMs)
        try c.encode(restartLimit, forKey: .restartLimit)
        try c.encode(restartWindowMs, forKey: .restartWindowMs)
        try c.encodeIfPresent(logMaxBytes, forKey: .logMaxBytes)
        try c.encodeIfPresent(logKeep, forKey: .logKeep)
        try c.encodeIfPresent(lease, forKey: .lease)
        try c.encodeIfPresent(front, forKey: .front)
        try c.encodeIfPresent(upstream, forKey: .upstream)
        try c.encodeIfPresent(frontMaxPending, forKey: .frontMaxPending)
        try c.encodeIfPresent(frontMode, forKey: .frontMode)
        try c.encodeIfPresent(frontAudit, forKey: .frontAudit)
        try c.encodeIfPresent(stopCommand, forKey: .stopCommand)
        try c.encodeIfPresent(preStart, forKey: .preStart)
        try c.encodeIfPresent(postReady, forKey: .postReady)
        try c.encodeIfPresent(idle, forKey: .idle)
        try c.encodeIfPresent(freezeMaxMs, forKey: .freezeMaxMs)
        try c.encodeIfPresent(requires, forKey: .requires)
        try c.encodeIfPresent(capacityGroup, forKey: .capacityGroup)
        try c.encodeIfPresent(cost, forKey: .cost)
        try runAs.encode(to: encoder)
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases.map(\.rawValue) + RunAs.Keys.allCases.map(\.rawValue), at: nil)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = ServiceDefinition(start: [])
        start = try c.decodeIfPresent([String].self, forKey: .start) ?? []
        slots = try c.decodeIfPresent(Int.self, forKey: .slots)
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
        logMaxBytes = try c.decodeIfPresent(Int.self, forKey: .logMaxBytes)
        logKeep = try c.decodeIfPresent(Int.self, forKey: .logKeep)
        lease = try c.decodeIfPresent([String].self, forKey: .lease)
        front = try c.decodeIfPresent([String].self, forKey: .front)
        upstream = try c.decodeIfPresent(String.self, forKey: .upstream)
        frontMaxPending = try c.decodeIfPresent(Int.self, forKey: .frontMaxPending)
        frontMode = try c.decodeIfPresent(String.self, forKey: .frontMode)
        frontAudit = try c.decodeIfPresent(String.self, forKey: .frontAudit)
        stopCommand = try c.decodeIfPresent([String].self, forKey: .stopCommand)
        preStart = try c.decodeIfPresent([String].self, forKey: .preStart)
        postReady = try c.decodeIfPresent([String].self, forKey: .postReady)
        idle = try c.decodeIfPresent(String.self, forKey: .idle)
        freezeMaxMs = try c.decodeIfPresent(Int.self, forKey: .freezeMaxMs)
        requires = try c.decodeIfPresent([String].self, forKey: .requires)
        capacityGroup = try c.decodeIfPresent(String.self, forKey: .capacityGroup)
        cost = try c.decodeIfPresent(Int.self, forKey: .cost)
        runAs = try RunAs(from: decoder)
    }

    /// The signal number of `stop_signal`.
    public var stopSignalNumber: Int32 { Signals.number(named: stopSignal) ?? SIGTERM }

    /// The largest `slots` any definition may ask for (a daemon's per-service lease limit
    /// may lower it).
    public static let slotsRange = 1...32_000

    /// `log_max_bytes`: 0 (never rotate), or 4 KiB to 1 TiB.
    public static let logMaxBytesRange = 4_096...(1 << 40)
    public static let logKeepRange = 0...100

    /// Nothing to run: a lock or semaphore that only counts.
    public var isLock: Bool { start.isEmpty }

    /// Checks every field; throws the first problem, naming the field.
    public func validate() throws(DefinitionError) {
        if let slots, !Self.slotsRange.contains(slots) {
            throw DefinitionError(field: "slots", message: "must be within \(Self.slotsRange)")
        }
        if isLock {
            guard slots != nil else {
                throw DefinitionError(field: "start", message: "must be a non-empty argv array (or give slots for a lock with no process)")
            }
            for (field, set) in [("health", health != nil), ("pid_file", pidFile != nil), ("cwd", cwd != nil), ("env", !env.isEmpty),
                                 (runAs.firstField ?? "", runAs.firstField != nil)] where set {
                throw DefinitionError(field: field, message: "needs a start command (a service with no start is a lock)")
            }
        } else if start[0].isEmpty {
            throw DefinitionError(field: "start", message: "must be a non-empty argv array")
        }
        if start.contains(where: { $0.utf8.contains(0) }) {
            throw DefinitionError(field: "start", message: "arguments must not contain NUL")
        }
        for (key, value) in env where key.isEmpty || key.contains("=") || key.utf8.contains(0) || value.utf8.contains(0) {
            throw DefinitionError(field: "env", message: "invalid variable \(key)")
        }
        try runAs.validate()
        if let cwd {
            var isDirectory = false
            guard cwd.hasPrefix("/"), FileManager.default.fileExists(atPath: cwd, isDirectory: &isDirectory), isDirectory
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
        if let logMaxBytes, logMaxBytes != 0, !Self.logMaxBytesRange.contains(logMaxBytes) {
            throw DefinitionError(field: "log_max_bytes", message: "0 (never rotate) or within \(Self.logMaxBytesRange)")
        }
        if let logKeep, !Self.logKeepRange.contains(logKeep) {
            throw DefinitionError(field: "log_keep", message: "must be within \(Self.logKeepRange)")
        }
        if let lease { _ = try AccessSubject.parse(lease, field: "lease") }
        if isLock, logMaxBytes != nil || logKeep != nil {
            throw DefinitionError(field: logMaxBytes != nil ? "log_max_bytes" : "log_keep", message: "needs a start command (a service with no start is a lock)")
        }
        guard Signals.number(named: stopSignal) != nil else {
            throw DefinitionError(field: "stop_signal", message: "one of \(Signals.byName.keys.sorted().joined(separator: ", "))")
        }
        try validateFront()
        try validateHooks()
        try validateIdle()
        try validateRequires()
        try validateGroup()
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
