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

    /// Why an existing set at our key cannot be used.
    public enum OwnershipError: Error, Equatable, Sendable, CustomStringConvertible {
        case foreign(key: Int32, ownerUID: UInt32, mode: UInt32, semaphores: UInt32)
        public var description: String {
            switch self {
            case let .foreign(key, uid, mode, n):
                return "semaphore set with key \(key) is not procrefd's (owner uid \(uid), mode \(String(mode, radix: 8)), \(n) semaphores)"
            }
        }
    }

    public enum OpenError: Error, Equatable, Sendable, CustomStringConvertible {
        case system(SystemCallError)
        case ownership(OwnershipError)
        public var description: String {
            switch self {
            case .system(let e): return e.description
            case .ownership(let e): return e.description
            }
        }
    }

    /// The documented key for a service: FNV-1a (32 bit) of `"procrefd:" + name`, folded into
    /// the positive Int32 range and never 0 (IPC_PRIVATE) or -1.
    public static func key(forService name: String) -> Int32 {
        var hash: UInt32 = 2_166_136_261
        for byte in ("procrefd:" + name).utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        let folded = Int32(bitPattern: hash & 0x7fff_ffff)
        return folded == 0 ? 1 : folded
    }

    /// Opens the set at `key`, creating it with `mode` if absent. An existing set must be ours:
    /// owned by our effective uid, two semaphores, and the same mode.
    public static func openOrCreate(key: Int32, mode: UInt32 = 0o600) throws(OpenError) -> SemaphoreSet {
        let created = procref_semget(key, 2, Int32(mode) | IPC_CREAT | IPC_EXCL)
        if created >= 0 { return SemaphoreSet(key: key, id: created) }
        let error = SystemCallError.current("semget")
        guard error.errno == .fileExists else { throw .system(error) }
        let existing = procref_semget(key, 0, 0)
        guard existing >= 0 else { throw .system(.current("semget")) }
        let set = SemaphoreSet(key: key, id: existing)
        let info: procref_sem_info
        do { info = try set.stat() } catch { throw .system(error) }
        guard info.owner_uid == geteuid(), info.nsems == 2, info.mode == mode else {
            throw .ownership(.foreign(key: key, ownerUID: info.owner_uid, mode: info.mode, semaphores: info.nsems))
        }
        return set
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

    /// Adds a reference held by this process (SEM_UNDO). Holders do this; tests use it too.
    public func addReference() throws(SystemCallError) {
        try check("semop(+1)", procref_semop2(id, Self.countIndex, 1, Int16(procref_sem_undo_flag()), 1, 0, 0, 0))
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

