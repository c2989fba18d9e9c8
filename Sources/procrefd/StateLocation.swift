import ArgumentParser
import Daemon
import FoundationEssentials
import Glibc
import Lifecycle
import Posix

/// `--state-dir`, shared by every command.
struct StateLocation: ParsableArguments {
    @Option(help: "State directory (database, socket, PID file, token, service logs). Default: $XDG_STATE_HOME/procrefd or ~/.local/state/procrefd.")
    var stateDir: String?

    var directory: StateDirectory {
        let environment = ProcessInfo.processInfo.environment
        let path = stateDir ?? StateDirectory.defaultPath(environment: environment)
        // A socket outside the state dir ($PROCREFD_SOCKET, as `socket_path` put it there).
        let socket = environment["PROCREFD_SOCKET"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        return StateDirectory(path: path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path, socket: socket)
    }
}

/// Writes a line to standard error.
func printError(_ message: String) {
    _ = Descriptor.writeAll(STDERR_FILENO, Array((message + "\n").utf8))
}

/// Writes `bytes` whole to standard output.
func writeStandardOutput(_ bytes: [UInt8]) {
    _ = Descriptor.writeAll(STDOUT_FILENO, bytes)
}
