import Glibc
import Posix

/// A service's memory, CPU and process caps, written to its cgroups: the v2 group where the
/// v2 hierarchy offers the controller, else a group of the v1 hierarchy that has it,
/// `<procrefd's own group>/procrefd-<scope>/svc-<name>` in each. A cap no hierarchy can
/// enforce refuses the start; it is never silently dropped.
struct ServiceCaps: Sendable {
    /// The v2 group of the service and its parent (nil without cgroup tracking).
    let v2Parent: Cgroup?
    let v2: Cgroup?
    /// controller → the service's group in the v1 hierarchy of that controller.
    let v1: [String: Cgroup]

    init(scope: String, service: String, v2Parent: Cgroup?, controllers: CgroupControllers) {
        self.v2Parent = v2Parent
        v2 = v2Parent?.child("svc-\(service)")
        v1 = controllers.v1.mapValues { Cgroup(path: "\($0)/procrefd-\(scope)/svc-\(service)") }
    }

    /// One cap: its controller, and the files and texts that set it in each version.
    private struct Setting {
        let field: String
        let controller: String
        let v2: [(String, String)]
        let v1: [(String, String)]
    }

    private func settings(_ runAs: RunAs) -> [Setting] {
        var settings: [Setting] = []
        if let bytes = runAs.memoryMax {
            // No swap past the cap: where swap is accounted, memory + swap gets the same limit.
            settings.append(Setting(field: "memory_max", controller: "memory", v2: [("memory.max", "\(bytes)"), ("memory.swap.max", "0")],
                                    v1: [("memory.limit_in_bytes", "\(bytes)"), ("memory.memsw.limit_in_bytes", "\(bytes)")]))
        }
        if let pids = runAs.pidsMax {
            settings.append(Setting(field: "pids_max", controller: "pids", v2: [("pids.max", "\(pids)")], v1: [("pids.max", "\(pids)")]))
        }
        if let cpus = runAs.cpuMax {
            let quota = max(1_000, Int((cpus * 100_000).rounded()))
            settings.append(Setting(field: "cpu_max", controller: "cpu", v2: [("cpu.max", "\(quota) 100000")],
                                    v1: [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "\(quota)")]))
        }
        return settings
    }

    /// Writes the caps `runAs` asks for (creating the groups) and returns the `cgroup.procs`
    /// of the v1 groups the child must join, open; the caller closes them. The v2 group must
    /// exist already (it is created for the spawn).
    func prepare(_ runAs: RunAs) throws(RunAsError) -> [Int32] {
        var joins: [String: Int32] = [:]  // by directory: co-mounted controllers share one
        do throws(RunAsError) {
            let offeredByV2 = v2Parent?.controllers ?? []
            for setting in settings(runAs) {
                if let v2, let v2Parent, offeredByV2.contains(setting.controller), v2Parent.enableForChildren(setting.controller) {
                    try write(setting.v2, in: v2, field: setting.field)
                } else if let group = v1[setting.controller] {
                    do {
                        try Cgroup(path: parentPath(of: group.path)).create()
                        try group.create()
                    } catch {
                        throw RunAsError("\(setting.field): cannot make the \(setting.controller) group: \(error)")
                    }
                    try write(setting.v1, in: group, field: setting.field)
                    if joins[group.path] == nil {
                        joins[group.path] = try checkOpen(group)
                    }
                } else {
                    throw RunAsError("\(setting.field): no \(setting.controller) controller in cgroup v2 or v1 here")
                }
            }
        } catch {
            for fd in joins.values { close(fd) }
            throw error
        }
        return Array(joins.values)
    }

    /// OOM kills in the service's memory group so far (nil when it has none).
    func oomKills() -> Int? {
        let file = v2.map { "\($0.path)/memory.events" }.flatMap { readSmallFile($0) } ?? v1["memory"].flatMap { readSmallFile("\($0.path)/memory.oom_control") }
        guard let text = file, let line = text.split(separator: "\n").first(where: { $0.hasPrefix("oom_kill ") }) else { return nil }
        return Int(line.dropFirst("oom_kill ".count))
    }

    /// Removes the v1 groups (empty once the service is stopped) and their parents when empty.
    func removeV1Groups() {
        for group in v1.values {
            try? group.remove()
            try? Cgroup(path: parentPath(of: group.path)).remove()
        }
    }

    private func write(_ files: [(String, String)], in group: Cgroup, field: String) throws(RunAsError) {
        for (index, (file, text)) in files.enumerated() {
            let path = "\(group.path)/\(file)"
            // The first file is the cap itself; the others (swap) exist only where accounted.
            guard Files.writeSmall(path, text) || (index > 0 && Files.kind(path) == nil) else {
                throw RunAsError("\(field): cannot write \(text) to \(path): \(SystemCallError.current("write").errno)")
            }
        }
    }

    private func checkOpen(_ group: Cgroup) throws(RunAsError) -> Int32 {
        let fd = open("\(group.path)/cgroup.procs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RunAsError("cannot open \(group.path)/cgroup.procs: \(SystemCallError.current("open").errno)") }
        return fd
    }

    private func parentPath(of path: String) -> String {
        String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
    }
}
