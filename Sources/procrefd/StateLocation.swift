import ArgumentParser
import Daemon
import Foundation
import Lifecycle

/// `--state-dir`, shared by every command.
struct StateLocation: ParsableArguments {
    @Option(help: "State directory (database, socket, PID file, token, service logs). Default: $XDG_STATE_HOME/procrefd or ~/.local/state/procrefd.")
    var stateDir: String?

    var directory: StateDirectory {
        let path = stateDir ?? StateDirectory.defaultPath(environment: ProcessInfo.processInfo.environment)
        return StateDirectory(path: path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path)
    }
}

/// Writes a line to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
