import ArgumentParser
import FoundationEssentials
import ProcrefdClient

/// `procrefd logs SERVICE [-n N] [-f]`: the service's output, through the API (no shell
/// access to the state dir needed).
struct LogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Print the last lines of a service's output; -f follows it.",
        discussion: "Exit codes: 0 done (or followed until interrupted), 4 no such service, 3 procrefd not reachable.")

    @OptionGroup var options: ClientOptions
    @Argument(help: "The service.") var service: String
    @Option(name: [.customShort("n"), .long], help: "How many lines from the end (0...10000).") var lines = 100
    @Flag(name: [.customShort("f"), .long], help: "Keep printing what the service writes.") var follow = false

    func run() throws {
        let path = "/v1/services/\(service)/logs?tail=\(lines)"
        // The tail is streamed too (chunked, from the file), so both are read as they come.
        try options.perform { client throws(ClientError) in
            try client.follow(follow ? path + "&follow=true" : path) { bytes in writeStandardOutput(bytes) }
        }
    }
}
