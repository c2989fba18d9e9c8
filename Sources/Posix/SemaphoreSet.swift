import CPosixShims
import Glibc
import SystemPackage

/// A System V semaphore set of two semaphores: `[0]` the reference count, `[1]` the startup lock.
///
/// Never calls SETVAL/SETALL: those erase every process's SEM_UNDO record, so a crash of a
/// holder would no longer give its reference back. A new set is all zero, which is the valid
/// initial state.
public struct SemaphoreSet: Sendable, Equatable {
    public static let countIndex: UInt16 = 0
    public static let lockIndex: UInt16 = 1

    public let key: Int32
    public let id: Int32

    /// The documented key of a service's set: FNV-1a (32 bit) of
    /// `"procrefd:" + scope + ":" + name`, plus `"#" + attempt` after a clash, folded into the
    /// positive Int32 range and never 0 (IPC_PRIVATE). `scope` names one state dir (see
    /// `StateDirectory.scope`), so two daemons on one host never derive the same key for
    /// the same service name.
    public static func key(scope: String, service name: String, attempt: Int = 0) -> Int32 {
        var hash: UInt32 = 2_166_136_261
        let text = "procrefd:\(scope):\(name)" + (attempt > 0 ? "#\(attempt)" : "")
        for byte in text.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        let folded = Int32(bitPattern: hash & 0x7fff_ffff)
        return folded == 0 ? 1 : folded
    }

    /// Creates a new set at `key` (IPC_CREAT | IPC_EXCL). nil when a set already exists
    /// there, or the key is otherwise barred to us: it is someone else's, and is never used
    /// or removed.
    public static func create(key: Int32, mode: UInt32 = 0o600) throws(SystemCallError) -> SemaphoreSet? {
        let created = procref_semget(key, 2, Int32(mode) | IPC_CREAT | IPC_EXCL)
        if created >= 0 { return SemaphoreSet(key: key, id: created) }
        let error = SystemCallError.current("semget")
        if error.errno == .fileExists || error.errno == .permissionDenied { return nil }
        throw error
    }

    /// Whether the set recorded as `key` + `id` still exists and is the one procrefd made:
    /// the key leads to that id, and IPC_STAT shows our uid, two semaphores and `mode`.
    public static func isRecorded(key: Int32, id: Int32, mode: UInt32) -> Bool {
        guard procref_semget(key, 0, 0) == id, let info = try? SemaphoreSet(key: key, id: id).stat() else { return false }
        return info.owner_uid == geteuid() && info.nsems == 2 && info.mode == mode
    }

    /// Opens an existing set at `key`, or nil when there is none.
    public static func existing(key: Int32) throws(SystemCallError) -> SemaphoreSet? {
        let id = procref_semget(key, 0, 0)
        if id >= 0 { return SemaphoreSet(key: key, id: id) }
        let error = SystemCallError.current("semget")
        if error.errno == .noSuchFileOrDirectory { return nil }
        throw error
    }

    public init(key: Int32, id: Int32) {
        self.key = key
        self.id = id
    }

    /// The kernel reference count (`GETVAL` on `[0]`): the truth about how many leases exist.
    public func count() throws(SystemCallError) -> Int {
        Int(try check("semctl(GETVAL)", procref_semctl_getval(id, Int32(Self.countIndex))))
    }

    /// Tries to take the startup lock `[1]`: wait-for-zero and +1 in one atomic semop, with
    /// SEM_UNDO so a crash of the taker frees it. Returns false when someone else holds it.
    public func tryLockStartup() throws(SystemCallError) -> Bool {
        let undo = Int16(procref_sem_undo_flag())
        let nowait = Int16(procref_ipc_nowait_flag())
        if procref_semop2(id, Self.lockIndex, 0, nowait, 2, Self.lockIndex, 1, undo | nowait) == 0 { return true }
        let error = SystemCallError.current("semop(lock)")
        if error.errno == .resourceTemporarilyUnavailable { return false }
        throw error
    }

    public func unlockStartup() throws(SystemCallError) {
        let undo = Int16(procref_sem_undo_flag())
        try check("semop(unlock)", procref_semop2(id, Self.lockIndex, -1, undo | Int16(procref_ipc_nowait_flag()), 1, 0, 0, 0))
    }

    public func stat() throws(SystemCallError) -> procref_sem_info {
        var info = procref_sem_info()
        try check("semctl(IPC_STAT)", procref_semctl_stat(id, &info))
        return info
    }

    /// IPC_RMID. Removing an already removed set is not an error.
    public func remove() throws(SystemCallError) {
        if procref_semctl_rmid(id) == 0 { return }
        let error = SystemCallError.current("semctl(IPC_RMID)")
        if error.errno == .invalidArgument || error.errno == .identifierRemoved { return }
        throw error
    }
}

