import ArgumentParser
import Daemon
import Foundation
import Lifecycle

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
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
