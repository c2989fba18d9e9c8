import FoundationEssentials
import Glibc
import Posix
import Wire

/// The daemon's state directory and the files in it.
public struct StateDirectory: Sendable {
    public let path: String
    /// The Unix socket, where it is not `STATE/procrefd.sock` (`socket_path`: a runtime
    /// directory others may reach, such as /run/procrefd/procrefd.sock).
    public let socketOverride: String?

    public init(path: String, socket: String? = nil) {
        self.path = path
        socketOverride = socket
    }

    public var database: String { "\(path)/procrefd.db" }
    public var socket: String { socketOverride ?? "\(path)/procrefd.sock" }
    public var pidFile: String { "\(path)/procrefd.pid" }
    public var lockFile: String { "\(path)/procrefd.lock" }
    public var tokenFile: String { "\(path)/token" }
    public var readTokenFile: String { "\(path)/read-token" }
    public var logs: String { "\(path)/logs" }
    /// Room kept for recording that the disk filled (see `Ballast`).
    public var ballast: String { "\(path)/ballast" }
    /// Where front doors that outlived a procrefd come back to the next one; nil when the
    /// path is too long for a Unix socket (doors then end with their procrefd).
    public var doorRendezvous: String? {
        let path = "\(path)/door.sock"
        return path.utf8.count < 108 ? path : nil
    }

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
        // Anyone who can write the state dir, or replace it, can replace the socket, token
        // or database, or make procrefd (often root) write through a link of theirs.
        for directory in [path, logs] {
            if let reason = Files.unsafeStateDirectoryReason(directory, owner: geteuid()) {
                throw .io("state directory refused: \(reason)")
            }
        }
        // A socket elsewhere: its directory is made (0755, for others to reach the socket)
        // and held to the same rule: nobody else may replace what procrefd listens on.
        if let socketOverride {
            let parent = String(socketOverride[..<(socketOverride.lastIndex(of: "/") ?? socketOverride.startIndex)])
            do { try Files.ensureDirectory(parent, mode: 0o755) } catch { throw .io("socket directory \(parent): \(error)") }
            if let reason = Files.unsafeStateDirectoryReason(parent, owner: geteuid()) {
                throw .io("socket directory refused: \(reason)")
            }
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
        if let existing = readSmallFile(file)?.trimmed(newlines: true), !existing.isEmpty { return existing }
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

/// This boot of the machine (`/proc/sys/kernel/random/boot_id`): a change means every
/// recorded process is gone.
public func currentBootID() -> String {
    readSmallFile("/proc/sys/kernel/random/boot_id")?.trimmed(newlines: true) ?? "unknown"
}
