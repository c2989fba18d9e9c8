/// The defined services by name, with the by-name order kept until the set changes: every
/// status scrape lists them sorted, and services change rarely.
struct ServiceTable {
    private var byName: [String: ServiceExecutor] = [:]
    private var sortedCache: [ServiceExecutor]?

    var count: Int { byName.count }
    var values: Dictionary<String, ServiceExecutor>.Values { byName.values }

    /// Every service, sorted by name.
    mutating func sortedByName() -> [ServiceExecutor] {
        if let sortedCache { return sortedCache }
        let sorted = byName.values.sorted { $0.name < $1.name }
        sortedCache = sorted
        return sorted
    }

    subscript(name: String) -> ServiceExecutor? {
        get { byName[name] }
        set {
            byName[name] = newValue
            sortedCache = nil
        }
    }

    @discardableResult
    mutating func removeValue(forKey name: String) -> ServiceExecutor? {
        sortedCache = nil
        return byName.removeValue(forKey: name)
    }
}
