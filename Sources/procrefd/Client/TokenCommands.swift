import ArgumentParser
import FoundationEssentials
import ProcrefdClient

/// `procrefd token create|list|revoke`: named tokens for TCP clients (the admin's).
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Make, list and revoke named tokens for TCP clients.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a token and print its secret (shown this once; only its SHA-256 is kept).",
            discussion: "Exit codes: 0 made, 3 procrefd not reachable, 5 refused (the name exists, not the admin), 1 other errors.")

        @OptionGroup var options: ClientOptions
        @Argument(help: "Its name: token:NAME in the audit log.") var name: String
        @Option(help: "reader, leaser, operator or admin.") var role: String
        @Option(name: .customLong("service"), help: "A leaser's service (repeatable).") var services: [String] = []

        func run() throws {
            try options.request("POST", "/v1/tokens", json: ["name": name, "role": role, "services": services]) { response in
                response.object["secret"] as? String ?? ""
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")

        @OptionGroup var options: ClientOptions

        func run() throws {
            try options.request("GET", "/v1/tokens") { response in
                let tokens = response.object["tokens"] as? [[String: Any]] ?? []
                return table(["NAME", "ROLE", "SERVICES", "CREATED", "BY", "REVOKED"], tokens.map { token in
                    [cell(token["name"]), cell(token["role"]), cell((token["services"] as? [String])?.joined(separator: ",")),
                     cell(token["created_at"]), cell(token["created_by"]), cell(token["revoked_at"])]
                })
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token: its next request gets 401.")

        @OptionGroup var options: ClientOptions
        @Argument(help: "The token's name.") var name: String

        func run() throws {
            try options.request("DELETE", "/v1/tokens/\(name)") { response in "revoked \(cell(response.object["name"]))" }
        }
    }
}
