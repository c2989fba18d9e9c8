import ArgumentParser
import AuditStore
import Configuration
import FoundationEssentials
import Lifecycle
import ProcrefdClient
import Wire

/// `procrefd services`: a table like `supervisorctl status`.
struct ServicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "services", abstract: "List services: state, kernel count, leases, front-door connections, pid.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        try options.request("GET", "/v1/services") { response in
            let services = response.object["services"] as? [[String: Any]] ?? []
            return table(["NAME", "STATE", "COUNT", "LEASES", "CONN", "PID", "SINCE", "RESTARTS", "LAST HEALTH"], services.map { service in
                [cell(service["name"]), cell(service["state"]), cell(service["count"]), cell(service["leases"]), cell(service["connections"]),
                 cell(service["pid"]), age(service["state_since"] as? String), cell(service["restarts"]), cell(service["last_health"])]
            })
        }
    }
}

/// How long ago an RFC 3339 time was, as `supervisorctl status` shows uptime: 42s, 5m, 3h, 2d.
func age(_ time: String?) -> String {
    guard let time, let date = Timestamp.parse(time) else { return "-" }
    let seconds = max(0, Int(Date().timeIntervalSince(date)))
    switch seconds {
    case ..<120: return "\(seconds)s"
    case ..<7_200: return "\(seconds / 60)m"
    case ..<172_800: return "\(seconds / 3_600)h"
    default: return "\(seconds / 86_400)d"
    }
}

/// `procrefd service show|define|restart|reset|remove NAME`.
struct ServiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service", abstract: "Show, define, restart, reset or remove one service.",
        subcommands: [Show.self, Define.self, Restart.self, Reset.self, Remove.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a service's status and definition.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The service.") var name: String

        func run() throws {
            try options.perform { client throws(ClientError) in
                let response = try client.call("GET", "/v1/services/\(name)", json: nil)
                // The tree of what it requires needs every service's `requires`: one more call.
                var requires: [String: [String]] = [:]
                if !options.json, !((response.object["requires"] as? [String]) ?? []).isEmpty {
                    for service in try client.call("GET", "/v1/services", json: nil).object["services"] as? [[String: Any]] ?? [] {
                        if let name = service["name"] as? String { requires[name] = service["requires"] as? [String] ?? [] }
                    }
                }
                options.show(response) { Self.text(response.object, requires: requires) }
            }
        }

        /// The status as lines, with the tree of what it requires.
        static func text(_ s: [String: Any], requires: [String: [String]]) -> String {
                var lines = ["name: \(cell(s["name"]))", "state: \(cell(s["state"])) (since \(cell(s["state_since"])), \(age(s["state_since"] as? String)) ago)",
                             "restarts: \(cell(s["restarts"]))", "pid: \(cell(s["pid"]))",
                             "count: \(cell(s["count"]))", "leases: \(cell(s["leases"]))",
                             "semaphore: key \(cell(s["key"])), semid \(cell(s["semid"]))",
                             "last health: \(cell(s["last_health"]))", "source: \(cell(s["source"]))"]
                if let front = s["front"] as? [String] { lines.append("front: \(front.joined(separator: ", ")), connections: \(cell(s["connections"]))") }
                if let reason = s["failure_reason"] as? String { lines.append("failure: \(reason)") }
                if let until = s["linger_until"] as? String { lines.append("lingers until: \(until)") }
                if let name = s["name"] as? String, !(requires[name] ?? []).isEmpty {
                    lines.append("requires:")
                    lines += dependencyTree(of: name, requires, indent: "  ")
                }
                if let requiredBy = s["required_by"] as? [String], !requiredBy.isEmpty {
                    lines.append("required by: \(requiredBy.joined(separator: ", "))")
                }
                if let definition = s["definition"], let data = try? JSONValue.encode(definition, pretty: true) {
                    lines.append("definition: " + String(decoding: data, as: UTF8.self))
                }
                return lines.joined(separator: "\n")
        }

        /// What `name` requires, one per line, each with what it requires below it (the
        /// graph has no cycle: the daemon refuses one).
        static func dependencyTree(of name: String, _ requires: [String: [String]], indent: String) -> [String] {
            (requires[name] ?? []).flatMap { dependency in
                ["\(indent)└─ \(terminalSafe(dependency))"] + dependencyTree(of: dependency, requires, indent: indent + "   ")
            }
        }
    }

    struct Define: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Define (or, while stopped, replace) a service from a JSON or TOML file.",
            discussion: "The file holds one definition: the body of PUT /v1/services/NAME (JSON), or the same keys in TOML.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The service.") var name: String
        @Option(help: "def.json or def.toml.") var file: String

        func run() throws {
            let body: Any
            do { body = try DefinitionFile.load(file) } catch {
                printError("procrefd: \(file): \(error)")
                throw ExitCode.failure
            }
            try options.request("PUT", "/v1/services/\(name)", json: body) { ($0.status == 201 ? "defined " : "replaced ") + name }
        }
    }

    struct Restart: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Restart a running service; its leases stay granted.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The service.") var name: String

        func run() throws {
            try options.request("POST", "/v1/services/\(name)/restart") { "restarted \(name): pid \(cell($0.object["pid"]))" }
        }
    }

    struct Reset: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a service out of `failed`.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The service.") var name: String

        func run() throws {
            try options.request("POST", "/v1/services/\(name)/reset") { "reset \(name): \(cell($0.object["state"]))" }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove an API-defined service (refused while it is leased or running).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The service.") var name: String

        func run() throws {
            try options.request("DELETE", "/v1/services/\(name)") { _ in "removed \(name)" }
        }
    }
}

/// A service definition file: JSON as the API takes it, or the same keys in TOML.
enum DefinitionFile {
    static func load(_ path: String) throws -> Any {
        guard let data = FileManager.default.contents(atPath: path) else { throw CocoaError(.fileReadNoSuchFile) }
        if path.hasSuffix(".toml") {
            let definition = try DaemonConfig.parseDefinition(String(decoding: data, as: UTF8.self), path: path)
            return try JSONValue.parse(Array(JSONEncoder().encode(definition))).any as Any
        }
        return try JSONValue.parse(Array(data)).any as Any
    }
}
