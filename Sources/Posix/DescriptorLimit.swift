import Glibc

/// The process's open-file limit (RLIMIT_NOFILE).
public enum DescriptorLimit {
    /// Raises the soft limit to at least `wanted` where it can: up to the hard limit, and the
    /// hard limit itself up to `fs.nr_open` when the process may (CAP_SYS_RESOURCE). Never
    /// lowers either. Returns the soft limit in force afterwards.
    @discardableResult
    public static func raise(toAtLeast wanted: Int) throws(SystemCallError) -> Int {
        var limit = rlimit()
        _ = try check("getrlimit", getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit))
        let target = rlim_t(wanted)
        guard limit.rlim_cur < target else { return Int(clamping: limit.rlim_cur) }
        if limit.rlim_max < target {
            let ceiling = readSmallFile("/proc/sys/fs/nr_open").flatMap { rlim_t($0.filter(\.isNumber)) } ?? limit.rlim_max
            var raised = rlimit(rlim_cur: min(target, ceiling), rlim_max: max(limit.rlim_max, min(target, ceiling)))
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return Int(clamping: raised.rlim_cur) }
        }
        var soft = rlimit(rlim_cur: min(target, limit.rlim_max), rlim_max: limit.rlim_max)
        _ = try check("setrlimit", setrlimit(Int32(RLIMIT_NOFILE.rawValue), &soft))
        return Int(clamping: soft.rlim_cur)
    }
}
