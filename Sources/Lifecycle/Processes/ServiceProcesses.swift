import Posix

/// Where a service's processes are: all of them, including what it forked, what left its
/// process group or session, and what a crashed procrefd never recorded.
///
/// With cgroup v2 (writable), each service runs in its own cgroup,
/// `<procrefd's cgroup>/procrefd-<scope>/svc-<name>`, and its members are the truth.
/// Elsewhere, every service process carries `PROCREFD_SERVICE=<scope>/<name>` in its
/// environment from its exec on, which what it starts inherits; the members are then the
/// processes carrying it, plus the main process's group and their descendants (procrefd
/// is a child subreaper, so an orphaned descendant stays below it).
struct ServiceProcesses: Sendable {
    static let markerVariable = "PROCREFD_SERVICE"

    /// The environment entry every process of the service is started with.
    let marker: String
    /// procrefd's cgroup for its services, and the service's own below it (either may not
    /// exist yet), or nil without cgroup tracking.
    let cgroupRoot: Cgroup?
    let cgroup: Cgroup?

    init(scope: String, service: String, cgroupRoot: Cgroup?) {
        marker = "\(Self.markerVariable)=\(scope)/\(service)"
        self.cgroupRoot = cgroupRoot
        cgroup = cgroupRoot?.child("svc-\(service)")
    }

    /// The service's cgroup (created if needed), open for a spawn to start the service in;
    /// nil without a cgroup. The caller closes it.
    func spawnDescriptor() throws(SystemCallError) -> Int32? {
        guard let cgroupRoot, let cgroup else { return nil }
        try cgroupRoot.create()
        try cgroup.create()
        return try cgroup.openForSpawning()
    }

    /// Live processes of the service. `thorough` also scans for the marker where a cgroup
    /// is used (processes started before it, or by a procrefd in another cgroup): for
    /// start-up reconciliation, not for every stop.
    func members(main: Int32?, thorough: Bool = false) -> Set<Int32> {
        var found: Set<Int32> = []
        if let cgroup { found.formUnion(cgroup.processes()) }
        guard cgroup == nil || thorough else { return found }
        let scan = ProcessScan.now()
        var roots = scan.carrying(marker)
        if let main { roots.formUnion(scan.group(main).union([main])) }
        return found.union(scan.descendants(of: roots))
    }

    /// Live processes of the service, found in a scan already made (one per request that
    /// asks about every service), with `carriers` the scan's `carriers(of: markerVariable)`.
    func members(main: Int32?, scan: ProcessScan, carriers: [String: Set<Int32>]) -> Set<Int32> {
        if let cgroup { return Set(cgroup.processes()) }
        var roots = carriers[marker] ?? []
        if let main { roots.formUnion(scan.group(main).union([main])) }
        return scan.descendants(of: roots)
    }

    /// Whether anything of the service still runs; cheap with a cgroup.
    func anyAlive(main: Int32?) -> Bool {
        if let cgroup { return cgroup.isPopulated }
        return !members(main: main).isEmpty
    }

    /// Removes the service's cgroup once empty. Kept from one start to the next: a cgroup
    /// made again right after its removal can wait tens of ms in mkdir for the old one to
    /// be released.
    func removeCgroup() { try? cgroup?.remove() }
}
