import FoundationEssentials
import Glibc
import Posix
import Wire

/// The front door's fields (see `FrontDoor`).
extension ServiceDefinition {
    public static let frontMaxPendingRange = 1...65_536
    public static let defaultFrontMaxPending = 256

    /// The parsed front addresses (empty without a front door).
    public var frontAddresses: [FrontAddress] { (front ?? []).compactMap(FrontAddress.init) }

    /// Has a front door.
    public var hasFront: Bool { !(front ?? []).isEmpty }

    /// The listening sockets go to the service at start (`front_mode = "activate"`).
    public var activatesSockets: Bool { hasFront && frontMode == "activate" }

    /// Each front connection's open and close is recorded (`front_audit = "connections"`).
    public var auditsConnections: Bool { frontAudit == "connections" }

    func validateFront() throws(DefinitionError) {
        guard let front else {
            let orphan = [("upstream", upstream != nil), ("front_max_pending", frontMaxPending != nil), ("front_mode", frontMode != nil), ("front_audit", frontAudit != nil)]
            if let (field, _) = orphan.first(where: \.1) { throw DefinitionError(field: field, message: "needs front") }
            return
        }
        guard !front.isEmpty else { throw DefinitionError(field: "front", message: "must list at least one address (or be left out)") }
        guard !isLock else { throw DefinitionError(field: "front", message: "needs a start command (a service with no start is a lock)") }
        guard slots == nil else { throw DefinitionError(field: "front", message: "cannot be combined with slots") }
        guard frontMode == nil || frontMode == "proxy" || frontMode == "activate" else {
            throw DefinitionError(field: "front_mode", message: "must be \"proxy\" or \"activate\"")
        }
        guard frontAudit == nil || frontAudit == "transitions" || frontAudit == "connections" else {
            throw DefinitionError(field: "front_audit", message: "must be \"transitions\" or \"connections\"")
        }
        if activatesSockets {
            // The service accepts on the sockets itself: nothing sits between to forward,
            // hold or count connections.
            for (field, given) in [("upstream", upstream != nil), ("front_max_pending", frontMaxPending != nil), ("front_audit", frontAudit != nil)] where given {
                throw DefinitionError(field: field, message: "does not apply with front_mode \"activate\" (the service accepts on the sockets itself)")
            }
            guard front.count <= Spawner.maxActivationSockets else {
                throw DefinitionError(field: "front", message: "at most \(Spawner.maxActivationSockets) addresses with front_mode \"activate\"")
            }
            guard pidFile == nil else { throw DefinitionError(field: "front_mode", message: "\"activate\" cannot be combined with pid_file") }
        }
        let target: FrontAddress?
        if activatesSockets {
            target = nil
        } else {
            guard let upstream else { throw DefinitionError(field: "upstream", message: "must be given with front: where the service listens") }
            guard let address = FrontAddress(upstream) else {
                throw DefinitionError(field: "upstream", message: "must be HOST:PORT with a numeric host ([V6]:PORT), or unix:/PATH")
            }
            target = address
        }
        var seen = Set<FrontAddress>()
        for text in front {
            guard let address = FrontAddress(text) else {
                throw DefinitionError(field: "front", message: "\(text.debugDescription): must be HOST:PORT with a numeric host ([V6]:PORT), or unix:/PATH")
            }
            guard address != target else { throw DefinitionError(field: "front", message: "\(address) is the upstream itself") }
            guard seen.insert(address).inserted else { throw DefinitionError(field: "front", message: "\(address) is listed twice") }
            if address.isPrivileged, geteuid() != 0 {
                throw DefinitionError(field: "front", message: "\(address): ports below 1024 need procrefd to run as root")
            }
        }
        if let frontMaxPending, !Self.frontMaxPendingRange.contains(frontMaxPending) {
            throw DefinitionError(field: "front_max_pending", message: "must be within \(Self.frontMaxPendingRange)")
        }
    }
}
