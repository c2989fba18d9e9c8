import Synchronization

/// The live leases and the acquires under way, with the lease limits: an acquire reserves
/// its place before it spawns a holder, so concurrent acquires can never pass a limit
/// together, and a refused one costs no process.
final class LeaseBook: Sendable {

    private struct State {
        /// The limits; a reload may change them.
        var maxLeases: Int
        var maxPerService: Int
        /// Per owner (`Principal.partyKey`); nil: no such limit.
        var maxPerOwner: Int?
        var table = LeaseTable()
        /// Acquires that reserved a place and have no lease in the table yet.
        var reserved = 0
        var reservedPerService: [String: Int] = [:]
        var reservedPerOwner: [String: Int] = [:]
        var refusals = RefusalFolding()
    }

    private let state: Mutex<State>

    init(maxLeases: Int, maxPerService: Int, maxPerOwner: Int? = nil) {
        state = Mutex(State(maxLeases: maxLeases, maxPerService: maxPerService, maxPerOwner: maxPerOwner))
    }

    /// New limits for reservations that start after this; leases above them stay.
    func setLimits(maxLeases: Int, maxPerService: Int, maxPerOwner: Int?) {
        state.withLock { ($0.maxLeases, $0.maxPerService, $0.maxPerOwner) = (maxLeases, maxPerService, maxPerOwner) }
    }

    /// Which limit refused a reservation.
    enum Limit: String, Sendable {
        case total = "max_leases"
        case service = "max_leases_per_service"
        case owner = "max_leases_per_user"
    }

    /// Why a reservation was refused, and whether to record it (see `RefusalFolding`).
    struct Refusal: Error {
        let reached: Limit
        let limit: Int
        /// Refusals folded into this one since the last record; nil: do not record this one.
        let folded: Int?
    }

    /// Reserves a place for an acquire on `service` by `owner` (a `Principal.partyKey`), or
    /// throws `Refusal` at a limit.
    func reserve(_ service: String, owner: String?, now: Int64) throws(Refusal) {
        let refusal = state.withLock { state -> Refusal? in
            let reached: (Limit, Int)?
            if state.table.count + state.reserved >= state.maxLeases {
                reached = (.total, state.maxLeases)
            } else if state.table.count(of: service) + (state.reservedPerService[service] ?? 0) >= state.maxPerService {
                reached = (.service, state.maxPerService)
            } else if let owner, let maxPerOwner = state.maxPerOwner,
                state.table.count(ofOwner: owner) + (state.reservedPerOwner[owner] ?? 0) >= maxPerOwner
            {
                reached = (.owner, maxPerOwner)
            } else {
                reached = nil
            }
            guard let (limit, value) = reached else {
                state.reserved += 1
                state.reservedPerService[service, default: 0] += 1
                if let owner { state.reservedPerOwner[owner, default: 0] += 1 }
                return nil
            }
            return Refusal(reached: limit, limit: value, folded: state.refusals.refused(service, now: now))
        }
        if let refusal { throw refusal }
    }

    /// Gives a reservation back (the acquire failed).
    func cancelReservation(_ service: String, owner: String?) {
        state.withLock { Self.unreserve(service, owner, &$0) }
    }

    /// Turns a reservation into a live lease.
    func insert(_ lease: Lease) {
        state.withLock { state in
            Self.unreserve(lease.service, lease.ownerKey, &state)
            state.table[lease.id] = lease
        }
    }

    /// A lease re-adopted at start-up (no reservation).
    func readopt(_ lease: Lease) { state.withLock { $0.table[lease.id] = lease } }

    @discardableResult
    func remove(_ id: String) -> Lease? { state.withLock { $0.table.removeValue(forKey: id) } }

    subscript(id: String) -> Lease? { state.withLock { $0.table[id] } }

    var all: [Lease] { state.withLock { Array($0.table.values) } }

    func leases(of service: String) -> [Lease] { state.withLock { $0.table.values.filter { $0.service == service } } }

    func count(of service: String) -> Int { state.withLock { $0.table.count(of: service) } }

    /// Live leases per service.
    var countsByService: [String: Int] { state.withLock { $0.table.countsByService } }

    private static func unreserve(_ service: String, _ owner: String?, _ state: inout State) {
        state.reserved -= 1
        let left = (state.reservedPerService[service] ?? 1) - 1
        state.reservedPerService[service] = left > 0 ? left : nil
        if let owner {
            let owned = (state.reservedPerOwner[owner] ?? 1) - 1
            state.reservedPerOwner[owner] = owned > 0 ? owned : nil
        }
    }
}

/// Refusals are audited at most once per service per second; the next record says how
/// many were folded into it, so a flood cannot flood the log.
struct RefusalFolding {
    private var entries: [String: (lastRecorded: Int64, suppressed: Int)] = [:]
    static let intervalMs: Int64 = 1_000

    /// A refusal at `now`: the number folded since the last record when this one is to be
    /// recorded, nil when it is folded.
    mutating func refused(_ service: String, now: Int64) -> Int? {
        if let entry = entries[service], now - entry.lastRecorded < Self.intervalMs {
            entries[service]?.suppressed += 1
            return nil
        }
        let folded = entries[service]?.suppressed ?? 0
        entries[service] = (now, 0)
        return folded
    }
}
