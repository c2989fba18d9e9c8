import FoundationEssentials
import Glibc
import Posix
import SystemPackage

/// What the singleton check found (historia-lifecycle's check_singleton).
public enum SingletonResult: String, Sendable {
    case available
    case staleSocketCleaned = "stale_socket_cleaned"
    case alreadyRunning = "already_running"
}

public enum DaemonError: Error, Sendable, CustomStringConvertible {
    case alreadyRunning(pid: Int32?)
    case io(String)
    case pidFile(String)

    public var description: String {
        switch self {
        case .alreadyRunning(let pid): return "already running" + (pid.map { " (pid \($0))" } ?? "")
        case .io(let message): return message
        case .pidFile(let message): return "PID file: \(message)"
        }
    }
}

/// The running daemon's claim on its state directory: the flock'ed lock file decides who
/// runs; the socket probe is kept for reporting and for cleaning a stale socket safely.
public final class DaemonClaim: Sendable {
    public let directory: StateDirectory
    public let singleton: SingletonResult
    private let lock: FileLock

    /// Claims `directory` for this process and writes the PID file.
    public static func claim(_ directory: StateDirectory) throws(DaemonError) -> DaemonClaim {
        try directory.prepare()
        let lock: FileLock
        do {
            guard let taken = try FileLock.tryLock(directory.lockFile) else {
                throw DaemonError.alreadyRunning(pid: try? directory.readPID())
            }
            lock = taken
        } catch let error as DaemonError {
            throw error
        } catch {
            throw .io("lock file: \(error)")
        }
        let singleton = try checkSocket(directory.socket)
        do { try Files.writeAtomically(directory.pidFile, contents: "\(getpid())\n", mode: 0o644) } catch {
            throw .io("PID file: \(error)")
        }
        return DaemonClaim(directory: directory, singleton: singleton, lock: lock)
    }

    private init(directory: StateDirectory, singleton: SingletonResult, lock: FileLock) {
        self.directory = directory
        self.singleton = singleton
        self.lock = lock
    }

    /// Probes the socket path. A live listener means another daemon; a socket of ours that
    /// refuses connections is stale and removed; anything else there is left alone.
    static func checkSocket(_ path: String) throws(DaemonError) -> SingletonResult {
        guard let kind = Files.kind(path) else { return .available }
        switch Probe.unix(path: path, timeoutMs: 500) {
        case .success:
            throw .alreadyRunning(pid: nil)
        case .failure(let error):
            guard kind.isSocket else { throw .io("\(path) exists and is not a socket; not removing it") }
            guard kind.ownerUID == geteuid() else { throw .io("\(path) is owned by uid \(kind.ownerUID); not removing it") }
            guard error.errno == .connectionRefused else { throw .io("cannot probe \(path): \(error)") }
            do { try Files.remove(path) } catch { throw .io("cannot remove stale socket: \(error)") }
            return .staleSocketCleaned
        }
    }

    /// Removes the PID file and the socket. Idempotent.
    public func cleanup() {
        try? Files.remove(directory.socket)
        try? Files.remove(directory.pidFile)
    }
}
