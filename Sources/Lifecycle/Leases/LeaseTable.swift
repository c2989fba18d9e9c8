/// The live leases by id, with a count per service kept alongside, so the limit check of
/// every acquire and each status scrape need not walk every lease (10,000 may be held).
struct LeaseTable {
    private var byID: [String: Lease] = [:]
    private var perService: [String: Int] = [:]

    var count: Int { byID.count }
    var values: Dictionary<String, Lease>.Values { byID.values }

    /// Live leases of one service.
    func count(of service: String) -> Int { perService[service] ?? 0 }

    /// Live leases per service (services without leases are absent).
    var countsByService: [String: Int] { perService }

    subscript(id: String) -> Lease? {
        get { byID[id] }
        set {
            removeValue(forKey: id)
            guard let newValue else { return }
            byID[id] = newValue
            perService[newValue.service, default: 0] += 1
        }
    }

    @discardableResult
    mutating func removeValue(forKey id: String) -> Lease? {
        guard let removed = byID.removeValue(forKey: id) else { return nil }
        let left = (perService[removed.service] ?? 1) - 1
        perService[removed.service] = left > 0 ? left : nil
        return removed
    }
}
