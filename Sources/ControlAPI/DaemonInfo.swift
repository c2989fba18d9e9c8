import Daemon
import Lifecycle
import Wire

/// What `GET /v1/daemon` reports about this run of procrefd.
public struct DaemonInfo: Sendable {
    public var pid: Int32
    public var startedAt: String
    public var stateDirectory: String
    public var singleton: SingletonResult
    public var bootID: String
    public var onExit: ShutdownMode
    public var reconciled: ReconcileReport
    /// The cgroup under which services get theirs; nil when they are tracked by marker.
    public var serviceCgroup: String?
    /// `limits.acquire_timeout_ms`: also the longest `wait_ms` an acquire may ask for.
    public var acquireTimeoutMs = 60_000

    public init(
        pid: Int32, startedAt: String, stateDirectory: String, singleton: SingletonResult, bootID: String,
        onExit: ShutdownMode, reconciled: ReconcileReport, serviceCgroup: String?
    ) {
        self.serviceCgroup = serviceCgroup
        self.pid = pid
        self.startedAt = startedAt
        self.stateDirectory = stateDirectory
        self.singleton = singleton
        self.bootID = bootID
        self.onExit = onExit
        self.reconciled = reconciled
    }
}

/// Asks the daemon to shut down; nil keeps the configured mode.
public typealias StopRequester = @Sendable (ShutdownMode?) -> Void

struct DaemonPayload: Encodable {
    struct Adopted: Encodable {
        let leases: Int
        let services: Int
        let leasesEnded: Int
        let servicesRecovered: Int
        let servicesStopped: Int
        let orphanHoldersKilled: Int

        enum CodingKeys: String, CodingKey {
            case leases, services
            case leasesEnded = "leases_ended"
            case servicesRecovered = "services_recovered"
            case servicesStopped = "services_stopped"
            case orphanHoldersKilled = "orphan_holders_killed"
        }
    }

    let pid: Int32
    let version: String
    let startedAt: String
    let stateDir: String
    let singleton: String
    let bootID: String
    let bootChanged: Bool
    let onExit: String
    let adopted: Adopted
    let serviceCgroup: String?
    let acquireTimeoutMs: Int
    /// Whether the request that asked is the admin's (the Unix socket, or the admin token).
    let admin: Bool
    /// The reads the request that asked may make (`ReadScope` names): the dashboard asks
    /// for a token before it tries one it may not.
    let canRead: [String]

    init(_ info: DaemonInfo, version: String, admin: Bool, canRead: [String]) {
        self.admin = admin
        self.canRead = canRead
        pid = info.pid
        self.version = version
        startedAt = info.startedAt
        stateDir = info.stateDirectory
        singleton = info.singleton.rawValue
        bootID = info.bootID
        bootChanged = info.reconciled.bootChanged
        onExit = info.onExit.rawValue
        serviceCgroup = info.serviceCgroup
        acquireTimeoutMs = info.acquireTimeoutMs
        let r = info.reconciled
        adopted = Adopted(
            leases: r.leasesReadopted, services: r.servicesAdopted, leasesEnded: r.leasesEnded,
            servicesRecovered: r.servicesRecovered, servicesStopped: r.servicesStopped,
            orphanHoldersKilled: r.orphanHoldersKilled)
    }

    enum CodingKeys: String, CodingKey {
        case pid, version, singleton, adopted
        case startedAt = "started_at"
        case stateDir = "state_dir"
        case bootID = "boot_id"
        case bootChanged = "boot_changed"
        case onExit = "on_exit"
        case serviceCgroup = "service_cgroup"
        case acquireTimeoutMs = "acquire_timeout_ms"
        case admin
        case canRead = "can_read"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pid, forKey: .pid)
        try c.encode(version, forKey: .version)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(stateDir, forKey: .stateDir)
        try c.encode(singleton, forKey: .singleton)
        try c.encode(bootID, forKey: .bootID)
        try c.encode(bootChanged, forKey: .bootChanged)
        try c.encode(onExit, forKey: .onExit)
        try c.encode(adopted, forKey: .adopted)
        try c.encode(serviceCgroup, forKey: .serviceCgroup)  // null: tracked by environment marker
        try c.encode(acquireTimeoutMs, forKey: .acquireTimeoutMs)
        try c.encode(admin, forKey: .admin)
        try c.encode(canRead, forKey: .canRead)
    }
}

/// `POST /v1/leases/{id}/keepalive` takes no field (`{}` or no body).
struct KeepaliveRequest: Decodable {
    init() {}

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        if container.contains(AnyCodingKey("ttl_ms")) {
            throw DefinitionError(field: "ttl_ms", message: "a keepalive renews the lease for its own ttl_ms; a different TTL needs a new lease")
        }
        try rejectUnknownKeys(in: decoder, allowed: [], at: nil)
    }
}

struct StopRequest: Decodable {
    let mode: ShutdownMode?
}

struct StopPayload: Encodable {
    let stopping: Bool
    let mode: String
}
