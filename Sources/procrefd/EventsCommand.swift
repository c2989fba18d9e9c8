import ArgumentParser
import AuditStore
import ControlAPI
import Daemon
import FoundationEssentials
import Glibc
import Posix
import Wire

/// `procrefd events [list]` and `procrefd events verify`: the audit log read straight from
/// the database (read-only, safe while the daemon runs, works while it is down).
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Review the audit log offline.",
        subcommands: [EventsList.self, EventsVerify.self], defaultSubcommand: EventsList.self)
}

/// Opens the state dir's database read-only; exits 1 with the reason when it cannot.
func openAuditStoreReadOnly(_ location: StateLocation) throws -> AuditStore {
    let path = location.directory.database
    guard FileManager.default.fileExists(atPath: path) else {
        printError("procrefd: no audit database at \(path)")
        throw ExitCode.failure
    }
    do { return try AuditStore(path: path, readOnly: true) } catch {
        printError("procrefd: \(error)")
        throw ExitCode.failure
    }
}

/// `procrefd events verify`: walks the hash chain from its anchor and says whether any
/// event was changed, removed or inserted through the file.
struct EventsVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the audit log's hash chain offline.",
        discussion: """
            Prints how many events were checked and `ok`, or the first id whose hash does not match. \
            To catch an edit that also rewrote the chain's end, compare the head it prints with the last \
            `audit chain head` line in procrefd's own log (the journal under systemd). \
            Exit codes: 0 intact, 1 broken or unreadable.
            """)

    @OptionGroup var location: StateLocation

    func run() throws {
        let store = try openAuditStoreReadOnly(location)
        let result: ChainVerification
        do { result = try store.read { try $0.verifyChain() } } catch {
            printError("procrefd: \(error)")
            throw ExitCode.failure
        }
        if let broken = result.firstBroken {
            print("\(result.checked) events checked from anchor \(result.anchorID): event \(broken) does not match its hash")
            throw ExitCode.failure
        }
        print("\(result.checked) events checked from anchor \(result.anchorID): ok (head \(result.headID) \(result.headHash))")
    }
}

/// `procrefd events [list]`: filtered events, as a table, JSON or NDJSON, or followed.
struct EventsList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Print events (the default).",
        discussion: "Exit codes: 0 printed, 1 the database cannot be read, 64 bad options.")

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, json, ndjson
    }

    @OptionGroup var location: StateLocation

    @Option(help: "Only this service.") var service: String?
    @Option(help: "Only these kinds (repeatable; a prefix like lease.* matches a family).") var kind: [String] = []
    @Option(help: "Only this lease.") var lease: String?
    @Option(help: "Only this pid.") var pid: Int32?
    @Option(help: "Only events this user caused (a name or a uid).") var user: String?
    @Option(help: "From this time on (RFC 3339).") var since: String?
    @Option(help: "Before this time (RFC 3339).") var until: String?
    @Option(help: "Only events with a larger id.") var after: Int64?
    @Option(help: "At most this many events.") var limit: Int = 1000
    @Option(help: "asc (oldest first) or desc.") var order: String = "asc"
    @Option(help: "table (aligned, local times), json (the API's page object), or ndjson.") var format: Format = .table
    @Flag(help: "Keep printing new events as they are recorded (table or ndjson). Without --after or --since it starts at the end, like tail -f: the last --lines events, then new ones.")
    var follow = false
    @Option(help: "With --follow from the end: how many of the newest events to show first.") var lines = 10

    func validate() throws {
        if let bad = kind.first(where: { !EventFilter.isValidKind($0) }) { throw ValidationError("--kind \(bad): not an event kind (e.g. lease.acquired) nor a family (e.g. lease.*)") }
        if !(1...1_000_000).contains(limit) { throw ValidationError("--limit must be within 1...1000000") }
        if EventFilter.Order(rawValue: order) == nil { throw ValidationError("--order is asc or desc") }
        if follow && (format == .json || order == "desc") { throw ValidationError("--follow needs --format table or ndjson and --order asc") }
        for (name, value) in [("--since", since), ("--until", until)] where value != nil && Timestamp.parse(value!) == nil {
            throw ValidationError("\(name): not an RFC 3339 time")
        }
    }

    func run() throws {
        let store = try openAuditStoreReadOnly(location)
        var filter = EventFilter(service: service, kinds: kind, lease: lease, after: after ?? 0, limit: limit)
        filter.pid = pid
        if let user {
            guard let uid = UInt32(user) ?? Accounts.user(user).map({ UInt32($0.uid) }) else {
                printError("procrefd: --user \(user): no such user")
                throw ExitCode.validationFailure
            }
            filter.uid = uid
        }
        filter.since = since.flatMap(Timestamp.parse)
        filter.until = until.flatMap(Timestamp.parse)
        filter.order = EventFilter.Order(rawValue: order) ?? .asc

        let printer = EventPrinter(format: format, colour: isatty(1) == 1)
        if follow && after == nil && since == nil {
            // From the end, like tail -f: the newest few, oldest first, then what comes.
            var newest = filter
            newest.order = .desc
            newest.limit = max(lines, 1)
            let tail = try store.read { try $0.events(newest) }
            printer.header()
            printer.print(lines > 0 ? Array(tail.reversed()) : [])
            try follow(store, filter, printer, from: tail.first?.id ?? 0)
        }
        let events = try store.read { try $0.events(filter) }
        if format == .json {
            printer.page(EventPagePayload(events: events, filter: filter, scanned: 0))
            return
        }
        printer.header()
        printer.print(events)
        guard follow else { return }
        try follow(store, filter, printer, from: events.last?.id ?? filter.after)
    }

    /// Prints what is recorded after `id`, as it is recorded, until interrupted.
    private func follow(_ store: AuditStore, _ filter: EventFilter, _ printer: EventPrinter, from id: Int64) throws -> Never {
        var filter = filter
        filter.limit = 1000
        filter.after = id
        while true {
            usleep(200_000)
            let events = try store.read { try $0.events(filter) }
            printer.print(events)
            filter.after = events.last?.id ?? filter.after
        }
    }
}

/// Writes events as an aligned table, a JSON page, or NDJSON lines.
struct EventPrinter {
    let format: EventsList.Format
    let colour: Bool

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// The API's page object, cursors included.
    func page(_ page: EventPagePayload) {
        write((try? Self.encoder.encode(page)).map { String(decoding: $0, as: UTF8.self) } ?? "{}")
    }

    func header() {
        guard format == .table else { return }
        write(row(["ID", "TIME", "KIND", "SERVICE", "LEASE", "PID", "ACTOR", "DETAIL"], kind: nil))
    }

    func print(_ events: [Event]) {
        for event in events {
            switch format {
            case .ndjson, .json:
                write((try? Self.encoder.encode(event)).map { String(decoding: $0, as: UTF8.self) } ?? "{}")
            case .table:
                let time = Timestamp.parse(event.time).map(Timestamp.formatLocal) ?? event.time
                let detail = (try? Self.encoder.encode(event.detail)).map { String(decoding: $0, as: UTF8.self) } ?? ""
                write(row([String(event.id), time, event.kind, event.service ?? "-", event.lease ?? "-",
                           event.pid.map(String.init) ?? "-", event.actor, detail], kind: event.kind))
            }
        }
    }

    private static let widths = [7, 23, 26, 20, 26, 8, 24]

    private func row(_ cells: [String], kind: String?) -> String {
        var line = ""
        for (index, cell) in cells.map(terminalSafe).enumerated() {
            if index < Self.widths.count {
                var padded = cell.padded(to: Self.widths[index])
                if index == 2, let kind, colour { padded = Self.colourise(padded, kind: kind) }
                line += padded + " "
            } else {
                line += cell
            }
        }
        return line
    }

    private static func colourise(_ text: String, kind: String) -> String {
        let code: String
        if kind.hasSuffix("failed") || kind == "lease.lost" || kind == "process.refused" { code = "31" }
        else if kind.hasPrefix("lease.") { code = "32" }
        else if kind.hasPrefix("service.") { code = "36" }
        else if kind.hasPrefix("daemon.") || kind.hasPrefix("audit.") { code = "33" }
        else { code = "35" }
        return "\u{1B}[\(code)m\(text)\u{1B}[0m"
    }

    private func write(_ line: String) {
        writeStandardOutput(Array((line + "\n").utf8))
    }
}
