/// The live leases by id, with a count per service kept alongside, so the limit check of
/// every acquire and each status scrape need not walk every lease (10,000 may be held).
struct LeaseTable {
    private var byID: [String: Lease] = [:]
    private var perService: [String: Int] = [:]
    private var perOwner: [String: Int] = [:]

    var count: Int { byID.count }
    var values: Dictionary<String, Lease>.Values { byID.values }

    /// Live leases of one service.
    func count(of service: String) -> Int { perService[service] ?? 0 }

    /// Live leases of one owner (`Principal.partyKey`).
    func count(ofOwner owner: String) -> Int { perOwner[owner] ?? 0 }

    /// Live leases per service (services without leases are absent).
    var countsByService: [String: Int] { perService }

    subscript(id: String) -> Lease? {
        get { byID[id] }
        set {
            removeValue(forKey: id)
            guard let newValue else { return }
            byID[id] = newValue
            perService[newValue.service, default: 0] += 1
            if let owner = newValue.ownerKey { perOwner[owner, default: 0] += 1 }
        }
    }

    @discardableResult
    mutating func removeValue(forKey id: String) -> Lease? {
        guard let removed = byID.removeValue(forKey: id) else { return nil }
        let left = (perService[removed.service] ?? 1) - 1
        perService[removed.service] = left > 0 ? left : nil
        if let owner = removed.ownerKey {
            let owned = (perOwner[owner] ?? 1) - 1
            perOwner[owner] = owned > 0 ? owned : nil
        }
        return removed
    }
}
