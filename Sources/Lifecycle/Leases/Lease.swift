import AuditStore
import FoundationEssentials
import Posix
import Synchronization
import Wire

/// How a lease ended.
public enum LeaseEnd: String, Sendable {
    case released
    case expired
    case clientExited = "client_exited"
    case lost
    case revoked

    /// Who ended it, for its record: the owner's release, someone else's (an operator's or
    /// an admin's), the TTL, the client's exit, the holder's loss, or procrefd's drain.
    func endedBy(_ actor: Principal, owner: Principal) -> String {
        switch self {
        case .released: return actor.isSameParty(as: owner) ? "owner" : "other"
        case .expired: return "ttl"
        case .clientExited: return "client_exit"
        case .lost: return "holder_exit"
        case .revoked: return "procrefd"
        }
    }

    var eventKind: EventKind {
        switch self {
        case .released: return .leaseReleased
        case .expired: return .leaseExpired
        case .clientExited: return .leaseClientExited
        case .lost: return .leaseLost
        case .revoked: return .leaseRevoked
        }
    }

    /// The likely end of a lease whose holder's exit status is unknown.
    static func inferred(expiresAt: String?, clientPID: Int32?, now: Date) -> LeaseEnd {
        // The holder's own monotonic deadline may fire a little before the wall-clock one.
        if let expiresAt, let deadline = Timestamp.parse(expiresAt), deadline.timeIntervalSince(now) < 0.05 { return .expired }
        if let clientPID, ProcessIdentity.of(pid: clientPID)?.isAlive != true { return .clientExited }
        return .lost
    }

    /// The end of a lease a client released. It is named by who ended it: the client's
    /// release, unless the holder had already ended by itself (its TTL, its client's exit)
    /// or says so in its exit code. A holder that is not our child (re-adopted after a
    /// restart) has no readable status, and that alone never makes a release `lost`.
    static func ofRelease(holderExit status: ExitStatus?, endedByItself: Bool, lease: Lease) -> LeaseEnd {
        switch from(holderExit: status) {
        case .expired: return .expired
        case .clientExited: return .clientExited
        case .lost where endedByItself: return status == nil ? lease.inferredEnd() : .lost
        default: return .released
        }
    }

    /// Reads the holder's exit status (see procref-holder's exit codes).
    static func from(holderExit status: ExitStatus?) -> LeaseEnd {
        switch status {
        case .exited(code: HolderProtocol.exitReleased): return .released
        case .exited(code: HolderProtocol.exitExpired): return .expired
        case .exited(code: HolderProtocol.exitClientExited): return .clientExited
        default: return .lost
        }
    }
}

/// A lease's public description.
public struct LeaseInfo: Sendable, Equatable {
    public let id: String
    public let service: String
    public let holder: String
    public let holderPID: Int32
    public let clientPID: Int32?
    public let ttlMs: Int64?
    public let acquiredAt: String
    public let expiresAt: String?
    /// Who took it: only they, an operator or an admin may end it or keep it alive.
    public let owner: Principal

    public init(
        id: String, service: String, holder: String, holderPID: Int32, clientPID: Int32?, ttlMs: Int64?, acquiredAt: String,
        expiresAt: String?, owner: Principal
    ) {
        (self.id, self.service, self.holder, self.holderPID) = (id, service, holder, holderPID)
        (self.clientPID, self.ttlMs, self.acquiredAt, self.expiresAt, self.owner) = (clientPID, ttlMs, acquiredAt, expiresAt, owner)
    }

    /// A lease as its row stores it.
    init(record: LeaseRecord) {
        self.init(
            id: record.id, service: record.service, holder: record.holder, holderPID: record.holderPID, clientPID: record.clientPID,
            ttlMs: record.ttlMs, acquiredAt: record.acquiredAt, expiresAt: record.expiresAt, owner: record.owner)
    }
}

/// One live lease: its holder process and who is waiting for that process to exit.
final class Lease: Sendable {
    enum Phase: Sendable {
        /// Being granted, released or revoked by an operation that handles the exit itself.
        case managed
        /// Granted; an exit now is unexpected (expiry, client exit, crash).
        case active
        case ended
    }

    private struct State {
        var phase: Phase = .managed
        var info: LeaseInfo
        var exitStatus: ExitStatus??
        /// The holder said it gave its reference back (it exits 0 right after).
        var reportedRelease = false
        var waiters: [CheckedContinuation<ExitStatus?, Never>] = []
    }

    let holder: PidFD
    /// The pool's holder process when the lease runs on a pooled holder (nil for a holder
    /// re-adopted from an earlier procrefd, whose exit the lease watches itself).
    let pooled: HolderProcess?
    /// Never change for a lease: read without the lock.
    let id: String
    let service: String
    /// Whose lease it is, for the per-user limit (nil: procrefd's own).
    let ownerKey: String?
    private let state: Mutex<State>

    init(info: LeaseInfo, holder: PidFD, pooled: HolderProcess? = nil) {
        self.holder = holder
        self.pooled = pooled
        self.id = info.id
        self.service = info.service
        self.ownerKey = info.owner.partyKey
        self.state = Mutex(State(info: info))
    }
    var info: LeaseInfo { state.withLock { $0.info } }
    var phase: Phase { state.withLock { $0.phase } }

    func update(_ change: (inout LeaseInfo) -> Void) { state.withLock { change(&$0.info) } }

    /// Moves active → managed for a release; false when it is not active.
    func beginManaging() -> Bool {
        state.withLock { state in
            guard state.phase == .active else { return false }
            state.phase = .managed
            return true
        }
    }

    func setPhase(_ phase: Phase) { state.withLock { $0.phase = phase } }

    /// True once the watcher has seen the holder exit.
    var exitedAlready: Bool { state.withLock { $0.exitStatus != nil } }

    /// The holder's exit status as the watcher saw it (nil inside: not our child).
    var recordedExit: ExitStatus? { state.withLock { $0.exitStatus ?? nil } }

    /// Called by the exit watcher. Returns true when nobody manages the lease, so the exit
    /// must be handled as unexpected.
    func holderExited(_ status: ExitStatus?) -> Bool {
        wakeWaiters(with: status) { state in
            state.exitStatus = .some(status)
            return state.phase == .active
        }
    }

    /// Called when the holder reports that it gave its reference back: waiters go on at
    /// once, as if it had exited 0 (a holder released by signal exits next; a pooled one
    /// waits for its next lease).
    func holderReportedRelease() {
        wakeWaiters(with: .exited(code: 0)) { $0.reportedRelease = true }
    }

    /// Applies `change` and takes the waiters under the lock, then resumes them with `status`.
    private func wakeWaiters<R>(with status: ExitStatus?, _ change: (inout State) -> R) -> R {
        let (waiters, result) = state.withLock { state in
            let result = change(&state)
            defer { state.waiters = [] }
            return (state.waiters, result)
        }
        for waiter in waiters { waiter.resume(returning: status) }
        return result
    }

    /// Why the holder ended when its exit status cannot be read (a holder re-adopted from an
    /// earlier procrefd is not our child): its deadline passed, its client is gone, or lost.
    func inferredEnd(now: Date = Date()) -> LeaseEnd {
        LeaseEnd.inferred(expiresAt: info.expiresAt, clientPID: info.clientPID, now: now)
    }

    /// Waits until the holder has exited or reported its release (see `ReleaseReports`,
    /// which also kills a holder that takes too long).
    func waitForHolderEnd() async -> ExitStatus? {
        await withCheckedContinuation { continuation in
            let done: ExitStatus?? = state.withLock { state in
                if let status = state.exitStatus { return status }
                if state.reportedRelease { return .some(.exited(code: 0)) }
                state.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }
}
