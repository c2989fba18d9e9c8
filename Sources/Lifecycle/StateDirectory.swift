import Foundation
import Glibc
import Posix

/// The daemon's state directory and the files in it.
public struct StateDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public var database: String { "\(path)/procrefd.db" }
    public var socket: String { "\(path)/procrefd.sock" }
    public var pidFile: String { "\(path)/procrefd.pid" }
    public var lockFile: String { "\(path)/procrefd.lock" }
    public var tokenFile: String { "\(path)/token" }
    public var readTokenFile: String { "\(path)/read-token" }
    public var logs: String { "\(path)/logs" }

    /// The default: `$XDG_STATE_HOME/procrefd`, else `~/.local/state/procrefd`.
    public static func defaultPath(environment: [String: String]) -> String {
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return "\(state)/procrefd" }
        return "\(environment["HOME"] ?? "/tmp")/.local/state/procrefd"
    }

    /// Creates the directory (0700) and its logs folder.
    public func prepare() throws(DaemonError) {
        do {
            try Files.ensureDirectory(path, mode: 0o700)
            try Files.ensureDirectory(logs, mode: 0o700)
        } catch {
            throw .io("state directory \(path): \(error)")
        }
        guard access(path, R_OK | W_OK | X_OK) == 0 else {
            throw .io("state directory \(path) is not readable and writable by uid \(geteuid())")
        }
        // Anyone who can write the state dir can replace the socket, token or database.
        if let kind = Files.kind(path), kind.mode & 0o022 != 0 {
            throw .io("state directory \(path) is writable by group or others (mode \(String(kind.mode, radix: 8))); chmod go-w it")
        }
    }

    /// This state dir's identity on the host, `DEVICE.INODE`: the scope of its semaphore
    /// keys, cgroups and service markers, so that two daemons never share them. Call after
    /// `prepare()`.
    public func scope() throws(DaemonError) -> String {
        guard let identity = Files.identity(path) else { throw .io("state directory \(path): cannot stat it") }
        return "\(identity.device).\(identity.inode)"
    }

    /// A bearer token (by default the one for changes over TCP): read, or generated (0600) at
    /// first start. A token file others can write is refused: anyone could set the token.
    public func loadOrCreateToken(file: String? = nil) throws(DaemonError) -> String {
        let file = file ?? tokenFile
        if let kind = Files.kind(file) {
            guard kind.isRegular else { throw .io("\(file) is not a regular file") }
            guard kind.mode & 0o022 == 0 else {
                throw .io("\(file) is writable by group or others (mode \(String(kind.mode, radix: 8))); refusing to use it")
            }
            guard kind.ownerUID == geteuid() else { throw .io("\(file) is owned by uid \(kind.ownerUID); refusing to use it") }
        }
        if let existing = readSmallFile(file)?.trimmingCharacters(in: .whitespacesAndNewlines), !existing.isEmpty { return existing }
        let token = Files.randomHex(byteCount: 32)
        do { try Files.writeAtomically(file, contents: token + "\n", mode: 0o600) } catch {
            throw .io("token file: \(error)")
        }
        return token
    }

    /// Reads the PID file strictly: missing → nil; anything but decimal digits (> 0) and an
    /// optional newline → an error naming the content.
    public func readPID() throws(DaemonError) -> Int32? {
        guard let text = readSmallFile(pidFile, limit: 64) else { return nil }
        let digits = text.hasSuffix("\n") ? String(text.dropLast()) : text
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let pid = Int32(digits), pid > 0 else {
            throw .pidFile("\(pidFile) holds \(text.debugDescription), not a pid")
        }
        return pid
    }
}

/// What a stopping daemon does with its leases and services.
public enum ShutdownMode: String, Sendable, Codable, CaseIterable {
    /// Revoke every lease, stop every service, remove the semaphore sets.
    case drain
    /// Leave holders and services running for the next procrefd to re-adopt.
    case handoff
}

/// This boot of the machine (`/proc/sys/kernel/random/boot_id`): a change means every
/// recorded process is gone.
public func currentBootID() -> String {
    readSmallFile("/proc/sys/kernel/random/boot_id")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
}

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
