import ArgumentParser
import FoundationEssentials
import ProcrefdClient

/// `procrefd lease acquire|release|keepalive`.
struct LeaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease", abstract: "Acquire, release or keep alive one lease.",
        subcommands: [Acquire.self, Release.self, Keepalive.self])

    struct Acquire: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Acquire a lease and print its id (L=$(procrefd lease acquire web)).",
            discussion: "With neither --ttl nor --client-pid the daemon's default TTL applies. Exit codes: 0 granted, 3 procrefd not reachable, 4 no such service, 5 refused (limit, no free slot, failed service, start failed), 1 other errors.")

        @OptionGroup var options: ClientOptions
        @Argument(help: "The service.") var service: String
        @Option(help: "Lease TTL (500ms, 30s, 10m, 1h); keep it with `lease keepalive`.") var ttl: TimeSpan?
        @Option(help: "A label for the lease holder.") var holder: String?
        @Option(help: "End the lease when this process exits.") var clientPid: Int32?
        @Option(help: "When every slot of the service is taken, wait this long for one (30s, 10m), in arrival order.") var wait: TimeSpan?

        func run() throws {
            var body: [String: Any] = [:]
            if let ttl { body["ttl_ms"] = ttl.milliseconds }
            if let holder { body["holder"] = holder }
            if let clientPid { body["client_pid"] = clientPid }
            try options.perform { client throws(ClientError) in
                let response = try client.acquire(service: service, body: body, waitMs: wait?.milliseconds ?? 0)
                options.show(response) { cell(response.object["id"]) }
            }
        }
    }

    struct Release: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Release a lease.", discussion: "Exit codes: 0 released, 4 no live lease, 3 not reachable, 1 other errors.")

        @OptionGroup var options: ClientOptions
        @Argument(help: "The lease id.") var id: String

        func run() throws {
            try options.request("DELETE", "/v1/leases/\(id)") {
                "released \(id): count \(cell($0.object["count"]))" + ($0.object["service_stopped"] as? Bool == true ? ", service stopped" : "")
            }
        }
    }

    struct Keepalive: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Push a TTL lease's deadline to now + its TTL.", discussion: "Exit codes: 0 kept, 4 no live lease, 5 not a TTL lease, 1 other errors.")

        @OptionGroup var options: ClientOptions
        @Argument(help: "The lease id.") var id: String

        func run() throws {
            try options.request("POST", "/v1/leases/\(id)/keepalive") { "\(id) expires at \(cell($0.object["expires_at"]))" }
        }
    }
}

/// `procrefd leases [--service NAME]`.
struct LeasesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "leases", abstract: "List live leases.")

    @OptionGroup var options: ClientOptions
    @Option(help: "Only this service's leases.") var service: String?

    func run() throws {
        try options.request("GET", "/v1/leases" + (service.map { "?service=\($0)" } ?? "")) { response in
            let leases = response.object["leases"] as? [[String: Any]] ?? []
            return table(["ID", "SERVICE", "OWNER", "HOLDER", "HOLDER PID", "CLIENT PID", "EXPIRES"], leases.map { lease in
                [cell(lease["id"]), cell(lease["service"]), cell(lease["owner"]), cell((lease["holder"] as? String).flatMap { $0.isEmpty ? nil : $0 }),
                 cell(lease["holder_pid"]), cell(lease["client_pid"]), cell(lease["expires_at"])]
            })
        }
    }
}

/// `procrefd whoami`: who procrefd takes the caller for, and its role.
struct WhoamiCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show who procrefd takes you for, and your role.")

    @OptionGroup var options: ClientOptions

    func run() throws {
        try options.request("GET", "/v1/whoami") { response in
            let object = response.object
            let role = (object["role"] as? String) ?? "none"
            let rules = object["access_rules"] as? Bool == true ? "by [access]" : "no [access]: the socket and the admin token are admin"
            return "\(cell(object["principal"]))\(object["pid"].map { " pid \(cell($0))" } ?? "")\(object["comm"].map { " (\(cell($0)))" } ?? "")\nrole: \(role) (\(rules))"
        }
    }
}
