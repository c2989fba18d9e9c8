import AuditStore
import Posix
import FoundationEssentials
import LifecycleModel

/// Settings of the lifecycle core.
public struct CoordinatorConfig: Sendable {
    public var holderExecutable: String
    public var logsDirectory: String
    /// The state dir's identity (`StateDirectory.scope()`): semaphore keys, cgroups and
    /// service markers are derived from it, so they belong to this state dir alone.
    public var scope: String
    public var semaphoreMode: UInt32 = 0o600
    /// Run each service in a cgroup of its own where cgroup v2 allows it; false: track
    /// services by their environment marker alone.
    public var serviceCgroups = true
    public var maxLeases = 4096
    /// Per service; below the kernel's 32767 undo bound.
    public var maxLeasesPerService = 1024
    /// Per user (a uid on the socket, a token over TCP); nil: no such limit.
    public var maxLeasesPerUser: Int?
    public var defaultTTLMs: Int64 = 30_000
    /// Idle pre-spawned holders kept ready (0: spawn one per acquire).
    public var holderPoolSize = 8
    /// How long an acquire may wait for a service busy starting, stopping or recovering.
    public var acquireTimeoutMs = 60_000
    /// How long an Idempotency-Key is remembered.
    public var idempotencyWindowMs = 86_400_000
    /// Services that may be defined (API and config together).
    public var maxServices = 1000
    /// What services defined over the API may run, as whom, with which environment.
    public var confinement = APIConfinement()
    /// `procref-logpump`, which writes services' output and rotates their logs; nil: the
    /// output goes straight into the file, unrotated.
    public var logPumpExecutable: String?
    /// `procref-door`, a service's front door; nil: services cannot name `front`.
    public var doorExecutable: String?
    /// Where doors left by an earlier procrefd come back (a Unix socket in the state dir);
    /// nil: a door whose procrefd goes away finishes its connections and exits.
    public var doorRendezvous: String?
    /// Capacity groups and their capacities (`[groups.NAME] capacity`).
    public var groups: [String: Int] = [:]
    /// Defaults of `log_max_bytes` and `log_keep` (`[logs] max_bytes`, `keep`).
    public var logMaxBytes = 10 << 20
    public var logKeep = 3
    public static let ttlRange: ClosedRange<Int64> = 100...86_400_000

    public init(holderExecutable: String, logsDirectory: String, scope: String) {
        self.holderExecutable = holderExecutable
        self.logsDirectory = logsDirectory
        self.scope = scope
    }
}

/// An acquire request: at least one of `ttlMs` / `clientPID`; neither → the default TTL.
/// (The API's JSON body is decoded in ControlAPI.)
public struct AcquireRequest: Sendable, Equatable {
    public static func == (a: AcquireRequest, b: AcquireRequest) -> Bool {
        (a.holder, a.ttlMs, a.clientPID, a.waitMs, a.owner, a.clientOwner) == (b.holder, b.ttlMs, b.clientPID, b.waitMs, b.owner, b.clientOwner)
    }

    public var holder: String
    public var ttlMs: Int64?
    public var clientPID: Int32?
    /// How long to queue when every slot of the service is taken (0: refuse at once).
    public var waitMs: Int
    /// Who asks: the lease's owner (set by the core from the request's principal).
    public var owner = Principal.procrefd
    /// The uid `clientPID` must run as (set for callers below operator); nil: any.
    public var clientOwner: UInt32?
    /// The client's pidfd, opened by the core when it checked the client and handed to the
    /// holder: no other process can take the pid between the check and the holder's watch.
    var client: PidFD?

    public init(holder: String = "", ttlMs: Int64? = nil, clientPID: Int32? = nil, waitMs: Int = 0) {
        self.holder = holder
        self.ttlMs = ttlMs
        self.clientPID = clientPID
        self.waitMs = waitMs
    }
}

/// The answer to a granted acquire.
public struct LeaseGrant: Sendable, Equatable {
    public let lease: LeaseInfo
    /// Kernel count right after the acquire (nil: unreadable).
    public let count: Int?
    /// Whether this acquire started the service (count 0 → 1).
    public let started: Bool
    /// The same Idempotency-Key and request were seen before: this is that grant again.
    public var replayed = false
    /// How long the acquire queued for a slot (nil: it did not queue).
    public var waitedMs: Int?
}

/// An acquire's Idempotency-Key and a digest of what was asked with it.
public struct IdempotencyKey: Sendable, Equatable {
    public let key: String
    public let requestHash: String

    public init(key: String, requestHash: String) {
        self.key = key
        self.requestHash = requestHash
    }

    /// Keys are 1–255 visible ASCII characters.
    public static func isValid(_ key: String) -> Bool {
        (1...255).contains(key.utf8.count) && key.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7e }
    }
}

/// The answer to a release.
public struct ReleaseResult: Sendable, Equatable {
    public let lease: String
    /// Kernel count right after the release (nil: unreadable).
    public let count: Int?
    public let stoppedService: Bool
}

/// A service's public description.
public struct ServiceStatus: Sendable, Equatable {
    public let name: String
    public let state: ServiceState
    public let pid: Int32?
    public let count: Int?
    public let leases: Int
    public let key: Int32
    public let semid: Int32
    public let lastHealth: String?
    public let failureReason: String?
    public let lingerUntil: Date?
    public let source: String
    public let definition: ServiceDefinition
    public let stateSince: Date
    /// Restarts (and failed starts) within the definition's restart window.
    public let restarts: Int
    /// Acquires waiting for a slot (`definition.slots`).
    public var queued = 0
    /// Why `count` is nil: the kernel count could not be read (errno); nothing stops meanwhile.
    public var countError: String?
    /// Connections open through its front door (nil: it has none); `count` is `leases` plus these.
    public var connections: Int?
    /// Its front addresses as bound (a port 0 in the definition shows the port chosen).
    public var front: [String]?
    /// The services whose `requires` name it.
    public var requiredBy: [String] = []
}

/// What a service's summary depends on, cheap to read: the version of its published
/// snapshot, and its counts (the kernel's, re-read every time, and procrefd's leases).
public struct ServiceStamp: Sendable, Equatable {
    public let name: String
    public let version: UInt64
    public let count: Int?
    public let leases: Int

    public init(name: String, version: UInt64, count: Int?, leases: Int) {
        self.name = name
        self.version = version
        self.count = count
        self.leases = leases
    }
}

/// What `GET /v1/status` shows of one service, built only when a `ServiceStamp` changed.
public struct ServiceSummary: Sendable, Equatable {
    public let name: String
    public let state: ServiceState
    public let pid: Int32?
    /// The kernel count, read live (nil if the semaphore set cannot be read).
    public let count: Int?
    public let leases: Int
    public let failureReason: String?
    public let stateSince: Date
    public let restarts: Int
    public let lastHealth: String?
    /// The service's slots (nil: no limit of its own) and the acquires queued for one.
    public var slots: Int? = nil
    public var queued = 0
    /// Its user, groups and caps, as defined.
    public var runAs = RunAs()
}
