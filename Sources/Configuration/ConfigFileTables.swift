import AuditStore
import FoundationEssentials
import Lifecycle
import Posix
import Wire

// The config file's tables as written, before checks: each is decoded through `Strict`, which
// refuses keys it does not know, and `resolved` turns it into settings or says which key is wrong.

struct LimitsFile: StrictTable {
    var maxLeases: Int?
    var maxLeasesPerService: Int?
    var maxLeasesPerUser: Int?
    var maxBodyBytes: Int?
    var connectionLimit: Int?
    var perIPConnectionLimit: Int?
    var acquireTimeoutMs: Int?
    var maxServices: Int?
    var idempotencyWindowMs: Int?
    var maxWaitMs: Int?
    var maxStreams: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxStreams = "max_streams"
        case maxLeases = "max_leases"
        case maxLeasesPerService = "max_leases_per_service"
        case maxLeasesPerUser = "max_leases_per_user"
        case maxBodyBytes = "max_body_bytes"
        case connectionLimit = "connection_limit"
        case perIPConnectionLimit = "per_ip_connection_limit"
        case acquireTimeoutMs = "acquire_timeout_ms"
        case maxServices = "max_services"
        case idempotencyWindowMs = "idempotency_window_ms"
        case maxWaitMs = "max_wait_ms"
    }


    func resolved(_ fail: (String) -> ConfigError) throws(ConfigError) -> DaemonConfig.Limits {
        var limits = DaemonConfig.Limits()
        let checks: [(String, Int?, ClosedRange<Int>, WritableKeyPath<DaemonConfig.Limits, Int?>)] = [
            ("max_leases", maxLeases, 1...30_000, \.maxLeases),
            ("max_leases_per_service", maxLeasesPerService, 1...32_000, \.maxLeasesPerService),
            ("max_leases_per_user", maxLeasesPerUser, 1...30_000, \.maxLeasesPerUser),
            ("max_body_bytes", maxBodyBytes, 1_024...(16 << 20), \.maxBodyBytes),
            ("connection_limit", connectionLimit, 4...10_000, \.connectionLimit),
            ("per_ip_connection_limit", perIPConnectionLimit, 1...10_000, \.perIPConnectionLimit),
            ("acquire_timeout_ms", acquireTimeoutMs, 100...3_600_000, \.acquireTimeoutMs),
            ("max_services", maxServices, 1...30_000, \.maxServices),
            ("idempotency_window_ms", idempotencyWindowMs, 1_000...(30 * 86_400_000), \.idempotencyWindowMs),
            ("max_wait_ms", maxWaitMs, 0...60_000, \.maxWaitMs),
            ("max_streams", maxStreams, 1...10_000, \.maxStreams),
        ]
        for (name, value, range, keyPath) in checks {
            guard let value else { continue }
            guard range.contains(value) else { throw fail("limits.\(name): must be within \(range)") }
            limits[keyPath: keyPath] = value
        }
        return limits
    }
}

struct AccessFile: StrictTable {
    var admins: [String]?
    var operators: [String]?
    var readers: [String]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case admins, operators, readers
    }

}

/// `[groups.NAME]`: a capacity group.
struct GroupFile: StrictTable {
    var capacity: Int

    enum CodingKeys: String, CodingKey, CaseIterable {
        case capacity
    }
}

struct LogsFile: StrictTable {
    var maxBytes: Int?
    var keep: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxBytes = "max_bytes"
        case keep
    }

}

struct AuditFile: StrictTable {
    var retentionDays: Int?
    var retentionMaxEvents: Int?
    var pruneIntervalMs: Int?
    var anchorIntervalMs: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case anchorIntervalMs = "anchor_interval_ms"
        case retentionDays = "retention_days"
        case retentionMaxEvents = "retention_max_events"
        case pruneIntervalMs = "prune_interval_ms"
    }


    func resolved(_ fail: (String) -> ConfigError) throws(ConfigError) -> DaemonConfig.Audit {
        var audit = DaemonConfig.Audit()
        if let retentionDays {
            guard (1...36_500).contains(retentionDays) else { throw fail("audit.retention_days: must be within 1...36500") }
            audit.retention.maxAgeDays = retentionDays
        }
        if let retentionMaxEvents {
            guard (10...1_000_000_000).contains(retentionMaxEvents) else {
                throw fail("audit.retention_max_events: must be within 10...1000000000")
            }
            audit.retention.maxEvents = retentionMaxEvents
        }
        if let pruneIntervalMs {
            guard (100...86_400_000).contains(pruneIntervalMs) else { throw fail("audit.prune_interval_ms: must be within 100...86400000") }
            audit.pruneIntervalMs = pruneIntervalMs
        }
        if let anchorIntervalMs {
            guard (1_000...86_400_000).contains(anchorIntervalMs) else { throw fail("audit.anchor_interval_ms: must be within 1000...86400000") }
            audit.anchorIntervalMs = anchorIntervalMs
        }
        return audit
    }
}

struct SecurityFile: StrictTable {
    var tcpReadsNeedToken: Bool?
    var tcpOpenReads: [String]?
    var allowedHosts: [String]?
    var apiPrograms: [String]?
    var apiUsers: [String]?
    var apiEnvAllow: [String]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case apiEnvAllow = "api_env_allow"
        case tcpReadsNeedToken = "tcp_reads_need_token"
        case tcpOpenReads = "tcp_open_reads"
        case allowedHosts = "allowed_hosts"
        case apiPrograms = "api_programs"
        case apiUsers = "api_users"
    }

}
