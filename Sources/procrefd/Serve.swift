import ArgumentParser
import AuditStore
import ControlAPI
import Foundation
import Lifecycle
import Logging
import MicroHTTPD
import Posix

/// `procrefd serve`: runs the daemon until SIGTERM or SIGINT, then drains.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon (the default command).")

    static let defaultPort: UInt16 = 7683

    @Option(help: "State directory (database, socket, PID file, token, service logs). Default: $XDG_STATE_HOME/procrefd or ~/.local/state/procrefd.")
    var stateDir: String?

    @Option(help: "TCP listen address (numeric).")
    var listen = "127.0.0.1"

    @Option(help: "TCP port; 0 picks a free one.")
    var port: UInt16 = Serve.defaultPort

    @Option(help: "Path of procref-holder. Default: next to procrefd.")
    var holder: String?

    @Option(help: "SQLite durability: normal (survives a procrefd crash) or full (fsync every commit).")
    var durability: Durability = .normal

    @Option(help: "TTL of a lease that names neither ttl_ms nor client_pid.")
    var defaultTtlMs: Int64 = 30_000

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "procrefd")
        logger.logLevel = logLevel

        let directory = StateDirectory(path: absolute(stateDir ?? StateDirectory.defaultPath(environment: ProcessInfo.processInfo.environment)))
        let claim: DaemonClaim
        do { claim = try DaemonClaim.claim(directory) } catch {
            throw ValidationError("procrefd: \(error)")
        }
        defer { claim.cleanup() }
        if claim.singleton == .staleSocketCleaned { logger.notice("removed a stale socket at \(directory.socket)") }

        let signals = ShutdownSignals()
        let store = try AuditStore(path: directory.database, durability: durability)
        let token = try directory.loadOrCreateToken()
        var config = CoordinatorConfig(holderExecutable: holder ?? Self.siblingExecutable("procref-holder"), logsDirectory: directory.logs)
        config.defaultTTLMs = defaultTtlMs
        guard CoordinatorConfig.ttlRange.contains(defaultTtlMs) else {
            throw ValidationError("--default-ttl-ms must be within \(CoordinatorConfig.ttlRange)")
        }
        let coordinator = try Coordinator(config: config, store: store, logger: logger)
        let api = ControlAPI(coordinator: coordinator, store: store, access: AccessPolicy(token: token))

        let tcp = try Listener.tcp(host: listen, port: port)
        let unixFD = try Listener.unix(path: directory.socket, mode: 0o600)
        let limits = HTTPServerLimits()
        let servers = [
            try HTTPServer(listenFD: tcp.fd, transport: .tcp, limits: limits, responder: api),
            try HTTPServer(listenFD: unixFD, transport: .unix, limits: limits, responder: api),
        ]
        let address = listen.contains(":") ? "[\(listen)]:\(tcp.port)" : "\(listen):\(tcp.port)"
        try store.append(NewEvent(.daemonStarted, pid: getpid(), detail: [
            "version": .string(ControlAPI.version), "singleton": .string(claim.singleton.rawValue),
            "tcp": .string(address), "socket": .string(directory.socket),
        ]))
        logger.info("procrefd \(ControlAPI.version) listening on http://\(address) and unix:\(directory.socket), state in \(directory.path)")
        // One machine-readable line for scripts and tests that start procrefd on port 0.
        let line = #"{"ready":true,"pid":\#(getpid()),"tcp":"\#(address)","socket":"\#(directory.socket)"}"# + "\n"
        FileHandle.standardOutput.write(Data(line.utf8))

        let signal = await signals.next()
        logger.info("received \(signal), draining")
        for server in servers { server.stopAccepting() }
        await coordinator.drain(actor: Actor.procrefd)
        for server in servers { server.stop() }
        _ = try? store.append(NewEvent(.daemonStopped, pid: getpid(), detail: ["signal": .string(signal), "mode": "drain"]))
    }

    private func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// A program installed beside this one (`/proc/self/exe`'s directory).
    static func siblingExecutable(_ name: String) -> String {
        let own = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: own).deletingLastPathComponent().appendingPathComponent(name).path
    }
}

extension Durability: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
