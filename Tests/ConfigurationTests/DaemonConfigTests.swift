import AuditStore
import Daemon
import Foundation
import Configuration
import ControlAPI
import Lifecycle
import Testing

@Suite("Config file")
struct DaemonConfigTests {
    @Test("a full file parses into settings and service definitions")
    func fullFile() throws {
        let config = try DaemonConfig.parse("""
            listen = "127.0.0.1"
            port = 9000
            socket_mode = "0660"
            durability = "full"
            on_exit = "handoff"
            default_ttl_ms = 5000

            [limits]
            max_leases = 100
            acquire_timeout_ms = 2000

            [services.web]
            start = ["python3", "-m", "http.server", "8080"]
            health = { http = "http://127.0.0.1:8080/", timeout_ms = 500 }
            linger_ms = 1000
            restart_limit = 3

            [services.cache]
            start = ["memcached"]
            health = { tcp = "127.0.0.1:11211" }
            """)
        #expect(config.port == 9000)
        #expect(config.socketMode == 0o660)
        #expect(config.durability == .full)
        #expect(config.onExit == .handoff)
        #expect(config.defaultTTLMs == 5000)
        #expect(config.limits.maxLeases == 100)
        #expect(config.limits.acquireTimeoutMs == 2000)
        #expect(config.services.keys.sorted() == ["cache", "web"])
        #expect(config.services["web"]?.lingerMs == 1000)
        #expect(config.services["web"]?.restartLimit == 3)
        #expect(config.services["web"]?.health?.kind == .http(HTTPTarget("http://127.0.0.1:8080/")!))
        #expect(config.services["cache"]?.health?.kind == .tcp(host: "127.0.0.1", port: 11211))
    }

    @Test("bad files are rejected with the key or line named", arguments: [
        ("port = 70000", "port"),
        ("listen = = 1", "line 1"),
        ("prot = 1", "prot"),
        ("[limits]\nmax_lease = 3", "limits.max_lease"),
        ("socket_mode = \"0777\"", "socket_mode"),
        ("[services.Bad]\nstart = [\"x\"]", "services.Bad"),
        ("[services.web]\nstart = []", "services.web.start"),
        ("[services.web]\nstart = [\"x\"]\nlinger = 5", "linger"),
        ("[services.web]\nstart = [\"x\"]\nstop_signal = \"NOPE\"", "stop_signal"),
        ("[security]\ntcp_open_reads = [\"processes\"]", "security.tcp_open_reads"),
        ("[security]\ntcp_reads_need_token = true\ntcp_open_reads = [\"logs\"]", "security.tcp_open_reads"),
        ("[security]\nallowed_hosts = [\"http://evil.example/\"]", "security.allowed_hosts"),
        ("[security]\napi_env_allow = [\"HOME\"]", "security.api_env_allow"),
        ("[logs]\nmax_bytes = 100", "logs.max_bytes"),
        ("[limits]\nmax_streams = 0", "limits.max_streams"),
        ("[audit]\nanchor_interval_ms = 5", "audit.anchor_interval_ms"),
        ("[access]\nreaders = [\"no-such-user-x\"]", "access.readers"),
        ("socket_mode = \"0666\"", "socket_mode"),
    ])
    func rejected(text: String, named: String) {
        do {
            _ = try DaemonConfig.parse(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description.contains(named), "\(error.description)")
        }
    }

    @Test("[security] tcp_open_reads names exactly the reads the API can open")
    func openReads() throws {
        #expect(Set(ReadScope.openable.map(\.rawValue)) == Set(DaemonConfig.openableReads))
        let config = try DaemonConfig.parse("[security]\ntcp_open_reads = [\"events\", \"logs\"]\nallowed_hosts = [\"box.example\"]")
        #expect(config.security.tcpOpenReads == ["events", "logs"])
        #expect(config.security.allowedHosts == ["box.example"])
    }

    @Test("a reload names the keys only a restart can change, and not those the command line set")
    func restartOnly() throws {
        let running = try DaemonConfig.parse("port = 7000\ndurability = \"normal\"\n[limits]\nmax_leases = 10\n")
        let next = try DaemonConfig.parse("port = 7001\ndurability = \"full\"\n[limits]\nmax_leases = 20\nconnection_limit = 50\n")
        #expect(next.restartOnlyChanges(from: running) == ["port", "durability", "limits.connection_limit"])
        #expect(next.restartOnlyChanges(from: running, ignoring: ["port", "durability"]) == ["limits.connection_limit"])
        #expect(running.restartOnlyChanges(from: running).isEmpty)
    }
}

/// procrefd.toml(5), written by hand, against the parser: every key the parser accepts is
/// documented in its table's section, and every key documented there is accepted.
@Suite("procrefd.toml(5)")
struct ConfigManPageTests {
    /// The keys each section of the page documents (`.TP` then `.B key`), by table.
    static func documentedKeys() throws -> [String: Set<String>] {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("man/procrefd.toml.5").path
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var section: String?
        var keys: [String: Set<String>] = [:]
        for (index, line) in lines.enumerated() {
            if line.hasPrefix(".SH ") {
                let title = String(line.dropFirst(4))
                if title == "TOP-LEVEL KEYS" {
                    section = ""
                } else if title.hasPrefix("["), title.hasSuffix("]") {
                    section = String(title.dropFirst().dropLast())
                } else {
                    section = nil
                }
            } else if let section, line == ".TP", index + 1 < lines.count, lines[index + 1].hasPrefix(".B ") {
                keys[section, default: []].insert(String(lines[index + 1].dropFirst(3)))
            }
        }
        return keys
    }

    @Test("every key the parser accepts is in procrefd.toml(5), in its table's section, and nothing else is")
    func keysMatch() throws {
        let documented = try Self.documentedKeys()
        let accepted = DaemonConfig.acceptedKeys.mapValues(Set.init)
        #expect(Set(documented.keys) == Set(accepted.keys))
        for (table, keys) in accepted {
            let written = documented[table] ?? []
            #expect(keys.subtracting(written).isEmpty, "[\(table)] accepted but not documented: \(keys.subtracting(written).sorted())")
            #expect(written.subtracting(keys).isEmpty, "[\(table)] documented but not accepted: \(written.subtracting(keys).sorted())")
        }
    }
}
