import ArgumentParser
import ControlAPI

/// `procrefd`: the host's control plane for shared services.
@main
struct ProcrefdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "procrefd",
        abstract: "Kernel reference-counted leases on shared services, over REST.",
        version: ControlAPI.version,
        subcommands: [
            Serve.self, Status.self, Stop.self, Pid.self, Events.self, RunCommand.self, LeaseCommand.self, LeasesCommand.self, WhoamiCommand.self, TokenCommand.self,
            ServicesCommand.self, ServiceCommand.self, LogsCommand.self, CheckConfig.self,
        ],
        defaultSubcommand: Serve.self)
}
