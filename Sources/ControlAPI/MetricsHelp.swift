/// `# HELP` lines for `/metrics`: swift-metrics has no place for a description, and
/// Prometheus tooling (`promtool check metrics`) wants one for every metric.
enum MetricsHelp {
    static let texts: [String: String] = [
        "procrefd_lease_acquires_total": "Granted lease acquires, by service.",
        "procrefd_lease_acquire_duration_seconds": "Time to grant an acquire; started=true when it started the service.",
        "procrefd_lease_ends_total": "Ended leases, by service and how (released, expired, client_exited, lost, revoked).",
        "procrefd_lease_refusals_total": "Refused acquires, by service and reason (limit, failed, busy, start_failed, ...).",
        "procrefd_leases_active": "Live leases procrefd tracks, by service.",
        "procrefd_leases_by_user": "Live leases by owner (user name, or token:NAME): the 50 with the most, the rest as other.",
        "procrefd_lease_queue_length": "Acquires waiting for a slot, by service (services with slots).",
        "procrefd_lease_queue_wait_seconds": "How long granted acquires queued for a slot, by service.",
        "procrefd_holders": "Live lease holder processes.",
        "procrefd_kernel_refcount": "The service's kernel reference count (GETVAL of its semaphore 0); -1 when unreadable.",
        "procrefd_front_connections": "Connections open through the service's front door (part of its kernel count).",
        "procrefd_front_connections_total": "Connections the service's front door accepted.",
        "procrefd_group_capacity": "A capacity group's capacity ([groups.NAME] capacity).",
        "procrefd_group_cost_in_use": "The cost of a capacity group's running members.",
        "procrefd_group_queued": "Starts waiting for room in a capacity group.",
        "procrefd_front_bytes_total": "Bytes the service's front door forwarded, toward the service (upstream) or its clients (client).",
        "procrefd_front_pending": "Connections the service's front door holds while the service starts.",
        "procrefd_front_start_wait_seconds": "How long connections waited for a start their front door asked for.",
        "procrefd_service_state": "1 for the state each service is in, 0 for the others.",
        "procrefd_services": "Defined services.",
        "procrefd_service_restarts_total": "Service restarts after the first start, by service and cause (crash, unhealthy, admin, reset).",
        "procrefd_health_check_failures_total": "Failed health probes of running services (start-up polls not included).",
        "procrefd_http_requests_total": "HTTP requests, by route template, method and status.",
        "procrefd_sqlite_commit_duration_seconds": "Time of one SQLite commit of the audit store.",
        "procrefd_sqlite_commit_batch_size": "Transactions grouped into one SQLite commit.",
        "procrefd_audit_waiting_records": "Records (lease ends, service transitions) waiting in memory for storage; above 0 the audit log is degraded and new leases are refused.",
    ]

    /// The exposition text with a `# HELP` line before each `# TYPE` line.
    static func add(to text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + 2048)
        for line in text.split(separator: 10, omittingEmptySubsequences: false) {
            if line.starts(with: Self.typePrefix) {
                let name = String(decoding: line.dropFirst(Self.typePrefix.count).prefix { $0 != 32 }, as: UTF8.self)
                out += Array("# HELP \(name) \(texts[name] ?? "procrefd metric \(name).")\n".utf8)
            }
            out += line
            out.append(10)
        }
        if out.last == 10, text.last != 10 { out.removeLast() }
        return out
    }

    private static let typePrefix = Array("# TYPE ".utf8)
}
