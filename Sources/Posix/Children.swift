import CPosixShims
import Dispatch
import Glibc
import FoundationEssentials
import Synchronization

/// procrefd's children, and the orphans it inherits as a child subreaper.
///
/// As a subreaper, procrefd becomes the parent of whatever a service leaves behind when
/// its parent exits (a daemonizing service's grandchild), so nothing of a service ends up
/// under init, out of reach. Such orphans must be reaped here, but never a child that
/// someone waits for through its pidfd: that would steal its exit status. So every spawn
/// registers its child, under the same lock the orphan reaper checks.
public enum Children {
    private static let registered = Mutex<Set<Int32>>([])
    /// A scan is scheduled (SIGCHLDs that come meanwhile join it).
    private static let scanPending = Atomic<Bool>(false)

    /// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`).
    public static func becomeSubreaper() throws(SystemCallError) {
        _ = try check("prctl(PR_SET_CHILD_SUBREAPER)", procref_set_child_subreaper())
    }

    /// Runs `spawn` (which returns a pid, or ≤ 0) and registers the child atomically with it.
    static func spawning(_ spawn: () -> pid_t) -> pid_t {
        registered.withLock { children in
            let pid = spawn()
            if pid > 0 { children.insert(pid) }
            return pid
        }
    }

    /// A process inherited as subreaper that someone will wait for (a forking service's
    /// main process named by its pid file).
    public static func claim(_ pid: Int32) { _ = registered.withLock { $0.insert(pid) } }

    /// Nobody will wait for this child (a helper that ends by itself): the orphan reaper
    /// reaps it.
    public static func release(_ pid: Int32) { reaped(pid) }

    /// The child was reaped by whoever waited for it.
    static func reaped(_ pid: Int32) { _ = registered.withLock { $0.remove(pid) } }

    /// Reaps exited children nobody waits for. Returns how many.
    @discardableResult
    public static func reapOrphans() -> Int {
        let me = getpid()
        let zombies = ProcessScan.procPIDs().filter { pid in
            guard let stat = ProcessStat.read(pid: pid) else { return false }
            return stat.parentPID == me && stat.state == "Z"
        }
        guard !zombies.isEmpty else { return 0 }
        return registered.withLock { children in
            var reaped = 0
            for pid in zombies where !children.contains(pid) {
                var exited: Int32 = 0, bySignal: Int32 = 0, status: Int32 = 0
                if procref_waitpid(pid, 1, &exited, &bySignal, &status) == 0, exited != 0 { reaped += 1 }
            }
            return reaped
        }
    }

    /// Reaps orphans whenever a child ends: SIGCHLD wakes the loop (through a pipe its
    /// handler writes to), and one scan follows within `coalesceMs` for however many ended,
    /// on a Dispatch queue so the loop never waits for /proc. Orphans that ended before are
    /// reaped at once. Call once per process.
    public static func reapOrphansOnExit(through loop: IOLoop, coalesceMs: Int = 20) throws(SystemCallError) {
        let wakeups = try check("sigaction(SIGCHLD)", procref_sigchld_pipe())
        reapOrphans()
        try loop.watchReadable(wakeups) {
            var drained = [UInt8](repeating: 0, count: 64)
            while drained.withUnsafeMutableBytes({ read(wakeups, $0.baseAddress, $0.count) }) > 0 {}
            guard !scanPending.exchange(true, ordering: .acquiringAndReleasing) else { return }
            loop.schedule(afterMs: coalesceMs) {
                scanPending.store(false, ordering: .releasing)
                DispatchQueue.global().async { reapOrphans() }
            }
        }
    }
}
