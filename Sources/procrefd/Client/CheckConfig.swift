import ArgumentParser
import Configuration

/// `procrefd check-config FILE`: what SIGHUP would say of the file, without a daemon.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Check a config file as SIGHUP would, without a daemon.",
        discussion: "Exit codes: 0 valid, 1 invalid (the error names the file and the line or key).")

    @Argument(help: "The TOML config file.") var file: String

    func run() throws {
        do {
            // Loading checks every table, [services.NAME] included, as a reload would.
            let config = try DaemonConfig.load(path: file)
            print("\(file): ok (\(config.services.count) services)")
        } catch {
            printError("procrefd: \(error)")
            throw ExitCode.failure
        }
    }
}
