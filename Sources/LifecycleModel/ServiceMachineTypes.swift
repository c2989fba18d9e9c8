/// Where a service is in its lifecycle, as status shows it:
/// stopped → starting → ready ⇄ unhealthy → recovering → ready → stopping → stopped, and
/// failed (after too many restarts, until reset).
public enum ServiceState: String, Sendable, Codable, CaseIterable {
    case stopped
    case starting
    case ready
    case unhealthy
    case recovering
    case stopping
    case failed
    /// Idle with `idle = "freeze"`: its cgroup is frozen; the next acquire thaws it.
    case frozen
}

extension ServiceMachine {
    enum Phase: Equatable, Sendable {
        case stopped
        case starting(Start)
        /// Running and healthy; with `lingerUntil`, nothing counts it and it stops then.
        case ready(lingerUntil: Int64?)
        /// Ready, with acquires waiting on a health check; `attempt` counts failed probes + 1.
        case probing(attempt: Int)
        case stopping(then: AfterStop)
        /// Waiting out the backoff before a crash restart.
        case backoff
        case failed(String)
        /// Idle, its cgroup frozen (`idle = "freeze"`): thawed by the next acquire, stopped
        /// at `until` (freeze_max_ms after it froze).
        case frozen(until: Int64)
    }

    struct Start: Equatable, Sendable {
        enum Step: Equatable, Sendable {
            case spawning
            /// pid_file mode: waiting for the start command to exit 0.
            case awaitingLauncher
            /// pid_file mode: waiting for the file to name a live process of the service.
            case awaitingPidFile
            case probing
            /// Healthy: waiting for the `post_ready` hook to exit 0.
            case postReady
        }
        var reason: StartReason
        var begunAt: Int64
        var step: Step
        /// The acquire whose arrival started the service (it hears `started`).
        var startedBy: Waiter?
    }

    /// What follows a teardown.
    enum AfterStop: Equatable, Sendable {
        /// Stay stopped, unless an acquire came meanwhile.
        case idle
        case crashRestart
        case recover
        case adminRestart
        case failedStart(String, StartReason)
        /// Stay stopped: refuse whoever waits.
        case hold
    }
}

/// Who waits for an answer from a service's machine: an acquire, or an admin request.
public typealias Waiter = UInt64

/// The numbers of a definition the machine decides with (Lifecycle makes one from a
/// `ServiceDefinition`).
public struct ServicePolicy: Equatable, Sendable {
    public struct Health: Equatable, Sendable {
        public var failures: Int
        public var intervalMs: Int
        public var freshMs: Int

        public init(failures: Int, intervalMs: Int, freshMs: Int) {
            self.failures = failures
            self.intervalMs = intervalMs
            self.freshMs = freshMs
        }
    }

    public var readyTimeoutMs: Int
    public var lingerMs: Int
    public var restartBackoffMs: Int
    public var restartBackoffMaxMs: Int
    public var restartLimit: Int
    public var restartWindowMs: Int
    public var pidFile: String?
    public var health: Health?
    /// At most this many leases at once (nil: no limit of the service's own).
    public var slots: Int?
    /// Nothing to run: a lock that is `ready` while counted.
    public var isLock: Bool
    /// A `post_ready` hook runs once healthy: the start is ready when it exits 0.
    public var hasPostReady = false
    /// A `pre_start` hook runs before the spawn (while the start's step is `spawning`).
    public var hasPreStart = false
    /// `idle = "freeze"`: idle, the service is frozen instead of stopped, and stopped after
    /// this long frozen; nil: stopped.
    public var freezeMaxMs: Int?

    /// How soon a failed readiness probe is tried again during start-up.
    static let readinessRetryMs = 20
    /// How soon a pid file that names no live process is read again during start-up.
    static let pidFileRetryMs = 10

    public init(
        readyTimeoutMs: Int, lingerMs: Int, restartBackoffMs: Int, restartBackoffMaxMs: Int, restartLimit: Int,
        restartWindowMs: Int, pidFile: String?, health: Health?, slots: Int?, isLock: Bool
    ) {
        self.readyTimeoutMs = readyTimeoutMs
        self.lingerMs = lingerMs
        self.restartBackoffMs = restartBackoffMs
        self.restartBackoffMaxMs = restartBackoffMaxMs
        self.restartLimit = restartLimit
        self.restartWindowMs = restartWindowMs
        self.pidFile = pidFile
        self.health = health
        self.slots = slots
        self.isLock = isLock
    }

    /// The backoff before the restart that follows `earlier` restarts in the window.
    public func backoff(after earlier: Int) -> Int {
        var delay = restartBackoffMs
        for _ in 0..<earlier where delay < restartBackoffMaxMs { delay *= 2 }
        return min(delay, restartBackoffMaxMs)
    }
}

/// Why a service is being started (the `reason` of `service.starting`).
public enum StartReason: String, Sendable {
    case acquire
    /// After failed health checks.
    case recover
    /// After the main process exited while leased.
    case restart
    case reset
    case adminRestart = "admin_restart"
    /// At procrefd's start, for leases that outlived the previous procrefd.
    case reconcile
}

/// The machine's timers; each arming has a token, and a fire whose token is stale is ignored.
public enum ServiceTimer: Hashable, Sendable, CaseIterable {
    case startDeadline
    case readinessRetry
    case pidFileRetry
    case healthRetry
    case linger
    case backoff
    /// How long a service stays frozen before it is stopped.
    case frozenMax
}

/// What happens to a service's machine.
public enum ServiceEvent<By: Requester>: Equatable, Sendable {
    // Asked for
    case acquire(Waiter, by: By)
    /// The waiter stopped waiting (its acquire timed out).
    case abandon(Waiter)
    /// The kernel count reached 0. The waiter (if any) hears whether the service stopped.
    case lastReferenceGone(reason: String, by: By, Waiter?)
    case restartRequested(Waiter, by: By)
    case resetRequested(Waiter, by: By)
    /// Stop and stay stopped (drain, removal, an orphan at start-up).
    case stopRequested(reason: String, by: By, Waiter)
    /// Start if stopped (start-up reconciliation, for leases that outlived procrefd).
    case startRequested(Waiter, by: By)
    /// A main process left by an earlier procrefd runs; it is the service's now.
    case adopted
    case definitionChanged(ServicePolicy)
    /// An acquire wants one of the service's slots; with none free it queues for `waitMs`
    /// (refused at once when 0).
    case slotWanted(Waiter, waitMs: Int)
    /// A lease ended: the kernel count may have room for the head of the queue.
    case slotFreed
    /// A queued acquire stops waiting.
    case queueLeft(Waiter, QueueExit)
    /// procrefd is stopping: everyone queued is refused, and nobody queues any more.
    case queueClosed

    // Reported by the executor
    case spawned
    case spawnFailed(String)
    /// A step of the start outside the main process failed (`pre_start`): the start fails
    /// with this reason.
    case startStepFailed(String)
    /// The `post_ready` hook ended: nil on success, else why it failed.
    case postReadyFinished(token: UInt64, failure: String?)
    /// The start may not go ahead (its capacity group is full): nothing ran, nothing failed.
    case startRefused(ServiceRefusal)
    /// Its capacity group needs the room: stop it if nothing counts it and it idles
    /// (lingering or frozen). The waiter hears whether it stopped.
    case evictRequested(Waiter)
    case pidFileRead(PidFileReading)
    case mainExited(MainExit)
    case probePassed(token: UInt64)
    case probeFailed(token: UInt64, reason: String)
    case teardownFinished
    case timerFired(ServiceTimer, token: UInt64)
}

/// What reading a forking service's pid file found.
public enum PidFileReading: Equatable, Sendable {
    /// It names a live process of the service, now its main process.
    case adopted
    /// Not there yet, or not yet naming a live process of the service: read again.
    case notYet
    /// It can never be trusted (a link, a FIFO, another user's file): the start fails.
    case refused(String)
}

/// What the executor does for the machine, in order.
public enum ServiceAction<By: Requester>: Equatable, Sendable {
    /// Stop strays, spawn the main process, record `service.starting`; report `spawned` or
    /// `spawnFailed`.
    case spawn(StartReason, by: By)
    /// Read the pid file; report `pidFileRead`.
    case readPidFile
    /// Run the `post_ready` hook; report `postReadyFinished` with the token.
    case runPostReady(token: UInt64, by: By)
    /// Freeze the service's cgroup (nothing is reported back).
    case freeze
    /// Thaw it (before anything else of this step).
    case thaw
    /// Run the health check once; report `probePassed` or `probeFailed` with the token.
    /// `readiness` probes are start-up polls, not health failures.
    case probe(token: UInt64, readiness: Bool)
    /// Stop every process of the service (recording `service.stopping`/`stopped` when
    /// something ran); report `teardownFinished`.
    case teardown(reason: String, by: By)
    case schedule(ServiceTimer, afterMs: Int, token: UInt64)
    case cancel(ServiceTimer)
    case answer(Waiter, ServiceAnswer)
    case record(ServiceNote, by: By)
    /// The waiter takes a slot: launch its holder, then hand the machine its `acquire`.
    case launch(Waiter)
    /// The waiter is in the queue at `position` (1 = next): record `lease.queued`, and end
    /// its wait after `waitMs` or when its client exits.
    case queued(Waiter, position: Int, waitMs: Int)
    /// The waiter left the queue from `position`: record `lease.queue_left`.
    case leftQueue(Waiter, position: Int, QueueExit)
}

/// Why a queued acquire stopped waiting (the `reason` of `lease.queue_left`).
public enum QueueExit: String, Sendable {
    case timeout
    case disconnect
    case clientExit = "client_exit"
    /// The service was stopped for good (drain, removal).
    case serviceStopped = "service_stopped"
    /// procrefd is stopping.
    case shutdown
}

/// The machine's answer to a waiter.
public enum ServiceAnswer: Equatable, Sendable {
    /// The service is ready for the acquire; `started` when this acquire started it.
    case ready(started: Bool)
    /// The request is done; `stopped` when the service was stopped by it.
    case done(stopped: Bool)
    case refused(ServiceRefusal)
}

public enum ServiceRefusal: Equatable, Sendable {
    /// The service is `failed` (until reset).
    case failed(String)
    /// The start this waiter waited for failed.
    case startFailed(String)
    case notRunning
    case notFailed
    /// It is starting, stopping or recovering; try again.
    case busy(ServiceState)
    /// It was stopped for good (drain, removal) while the waiter waited.
    case stopped
    /// Every slot was taken until the wait ran out; `position` is where it stood (1 = next).
    case slotsExhausted(position: Int)
    /// It left the queue (its client went).
    case leftQueue(QueueExit)
    /// Its capacity group has no room (its running members, by name).
    case groupFull(group: String, members: [String])
}

/// Records the machine asks for (audit events beyond `service.starting`, `stopping` and
/// `stopped`, which the executor writes as it acts).
public enum ServiceNote: Equatable, Sendable {
    case ready(startupMs: Int64, reason: StartReason)
    case startFailed(String)
    case exited(MainExit)
    case unhealthy(reason: String, probes: Int)
    case recoveryFailed(String)
    case restarting(backoffMs: Int, attempt: Int)
    case failed(String, count: Int?)
    case reset(count: Int?)
    /// The kernel count could not be read (first time in a spell), with the errno.
    case kernelUnreadable(errno: Int32)
    /// Idle: frozen instead of stopped, until `untilMs` from now at most.
    case frozen(forMs: Int)
    /// Thawed for an acquire, after `frozenMs` frozen.
    case thawed(frozenMs: Int64)
}

/// How the main process ended, as far as the machine decides on it: whether it exited 0 (a
/// forking service's launcher must), and words for the records.
public struct MainExit: Equatable, Sendable, CustomStringConvertible {
    public let succeeded: Bool
    public let description: String

    public init(succeeded: Bool, description: String) {
        self.succeeded = succeeded
        self.description = description
    }
}
