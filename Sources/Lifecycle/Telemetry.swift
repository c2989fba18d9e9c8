import AuditStore
import Metrics
import Synchronization
import LifecycleModel

/// procrefd's metrics, through swift-metrics: the daemon bootstraps a Prometheus backend and
/// serves it on `GET /metrics`; in tests (no bootstrap) they cost nothing.
public enum Telemetry {
    /// Granted acquires, by service and whether the acquire started the service.
    static func acquired(service: String, started: Bool, nanoseconds: UInt64) {
        acquires(service).increment()
        acquireDuration(started ? "true" : "false").recordNanoseconds(Int64(clamping: nanoseconds))
    }

    /// Ended leases, by service and how (released, expired, client_exited, lost, revoked).
    static func ended(service: String, reason: LeaseEnd) {
        ends(service, reason.rawValue).increment()
    }

    // Made once per label set: these count every lease. (A removed service's few entries stay,
    // as the backend's own do.)
    private static let acquires = MetricCache { Counter(label: "procrefd_lease_acquires_total", dimensions: [("service", $0[0])]) }
    private static let acquireDuration = MetricCache {
        Timer(label: "procrefd_lease_acquire_duration_seconds", dimensions: [("started", $0[0])])
    }
    private static let ends = MetricCache {
        Counter(label: "procrefd_lease_ends_total", dimensions: [("service", $0[0]), ("reason", $0[1])])
    }

    /// Refused acquires, by reason (limit, failed, busy, shutting_down, start_failed, ...).
    static func refused(service: String, reason: String) {
        Counter(label: "procrefd_lease_refusals_total", dimensions: [("service", service), ("reason", reason)]).increment()
    }

    /// How long an acquire queued for a slot before it got one.
    static func queueWaited(service: String, milliseconds: Int) {
        Timer(label: "procrefd_lease_queue_wait_seconds", dimensions: [("service", service)])
            .recordNanoseconds(Int64(milliseconds) * 1_000_000)
    }

    /// Service (re)starts after the first, by cause (crash, unhealthy, admin, reset).
    static func restarted(service: String, cause: String) {
        Counter(label: "procrefd_service_restarts_total", dimensions: [("service", service), ("cause", cause)]).increment()
    }

    /// Connections a front door accepted since the last report, and how many wait for a start.
    static func frontAccepted(service: String, new: Int, pending: Int) {
        if new > 0 { frontAccepts(service).increment(by: new) }
        Gauge(label: "procrefd_front_pending", dimensions: [("service", service)]).record(pending)
    }

    /// How long connections waited for the start a front door asked for.
    static func frontStartWaited(service: String, nanoseconds: UInt64) {
        Timer(label: "procrefd_front_start_wait_seconds", dimensions: [("service", service)]).recordNanoseconds(Int64(clamping: nanoseconds))
    }

    /// A capacity group's capacity, the cost of its running members, and its queue.
    static func group(_ name: String, capacity: Int, inUse: Int, queued: Int) {
        Gauge(label: "procrefd_group_capacity", dimensions: [("group", name)]).record(capacity)
        Gauge(label: "procrefd_group_cost_in_use", dimensions: [("group", name)]).record(inUse)
        Gauge(label: "procrefd_group_queued", dimensions: [("group", name)]).record(queued)
    }

    private static let frontAccepts = MetricCache { Counter(label: "procrefd_front_connections_total", dimensions: [("service", $0[0])]) }

    /// Bytes a front door forwarded since the last report: `up` toward the service, `down`
    /// toward its clients.
    static func frontForwarded(service: String, up: Int, down: Int) {
        if up > 0 { frontBytes(service, "upstream").increment(by: up) }
        if down > 0 { frontBytes(service, "client").increment(by: down) }
    }

    private static let frontBytes = MetricCache {
        Counter(label: "procrefd_front_bytes_total", dimensions: [("service", $0[0]), ("direction", $0[1])])
    }

    static func healthCheckFailed(service: String) {
        Counter(label: "procrefd_health_check_failures_total", dimensions: [("service", service)]).increment()
    }

    /// Scrape-time gauges: what the coordinator holds right now.
    public static func recordState(of coordinator: any LifecycleCore) {
        let statuses = coordinator.serviceStatuses()
        var holders = 0
        for status in statuses {
            holders += status.leases
            Gauge(label: "procrefd_leases_active", dimensions: [("service", status.name)]).record(status.leases)
            Gauge(label: "procrefd_kernel_refcount", dimensions: [("service", status.name)]).record(status.count ?? -1)
            if let connections = status.connections {
                Gauge(label: "procrefd_front_connections", dimensions: [("service", status.name)]).record(connections)
            }
            if status.definition.slots != nil {
                Gauge(label: "procrefd_lease_queue_length", dimensions: [("service", status.name)]).record(status.queued)
            }
            for state in ServiceState.allCases {
                Gauge(label: "procrefd_service_state", dimensions: [("service", status.name), ("state", state.rawValue)])
                    .record(state == status.state ? 1 : 0)
            }
        }
        Gauge(label: "procrefd_holders").record(holders)
        Gauge(label: "procrefd_services").record(statuses.count)
        recordLeasesByUser(coordinator.leaseInfos(service: nil))
    }

    /// How many users `procrefd_leases_by_user` names; the rest are summed as `other`. User
    /// labels are unbounded, so they stay off `procrefd_leases_active`.
    static let usersShown = 50
    private static let usersLabelled = Mutex<Set<String>>([])

    /// Live leases per owner: the `usersShown` owners with the most, and `other`. An owner
    /// who no longer shows is removed from the exposition, not left at its last value.
    static func recordLeasesByUser(_ leases: [LeaseInfo]) {
        var counts: [String: Int] = [:]
        for lease in leases { counts[lease.owner.user ?? lease.owner.description, default: 0] += 1 }
        let ranked = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        var shown = Dictionary(uniqueKeysWithValues: ranked.prefix(usersShown).map { ($0.key, $0.value) })
        shown["other"] = ranked.dropFirst(usersShown).reduce(0) { $0 + $1.value }
        let gone = usersLabelled.withLock { labelled in
            defer { labelled = Set(shown.keys) }
            return labelled.subtracting(shown.keys)
        }
        for user in gone { Gauge(label: "procrefd_leases_by_user", dimensions: [("user", user)]).destroy() }
        for (user, count) in shown { Gauge(label: "procrefd_leases_by_user", dimensions: [("user", user)]).record(count) }
    }
}
