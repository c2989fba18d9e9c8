import ArgumentParser
import AuditStore
import Configuration
import ControlAPI
import Daemon
import FoundationEssentials
import Glibc
import Lifecycle
import Logging
import Metrics
import MicroHTTPD
import Posix
import Prometheus
import Wire

/// `procrefd serve`: claims the state directory, reconciles with the kernel and the live
/// processes, serves until SIGTERM/SIGINT or `POST /v1/daemon/stop`, then drains or hands off.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon (the default command).",
        discussion: "Exit codes: 0 stopped cleanly, 1 error, 4 already running.")

    /// Room kept in the state dir for recording a full disk: some thousands of records.
    static let ballastBytes = 1 << 20

    @OptionGroup var location: StateLocation

    @Option(help: "TOML config file: settings and [services.NAME] tables (options given here override it). SIGHUP reloads it.")
    var config: String?

    @Option(help: "TCP listen address (numeric): HOST, or HOST:PORT ([IPv6]:PORT). Default: 127.0.0.1.")
    var listen: String?

    @Option(help: "TCP port; 0 picks a free one. Default: 7683.")
    var port: UInt16?

    @Option(help: "Path of procref-holder. Default: next to procrefd.")
    var holder: String?

    @Option(help: "SQLite durability: normal (survives a procrefd crash; default) or full (fsync every commit).")
    var durability: Durability?

    @Option(help: "TTL of a lease that names neither ttl_ms nor client_pid. Default: 30000.")
    var defaultTtlMs: Int64?

    @Option(help: "On SIGTERM/SIGINT: drain (end leases, stop services; default) or handoff (leave them for the next procrefd).")
    var onExit: ShutdownMode?

    @Option(help: "Service cgroups: auto (each service in a cgroup of its own under procrefd's, where cgroup v2 is writable; default) or off (track services by their PROCREFD_SERVICE environment marker).")
    var serviceCgroups: ServiceCgroups = .auto

    enum ServiceCgroups: String, ExpressibleByArgument {
        case auto, off
    }

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if let listen {
            guard let parsed = ListenAddress.split(listen) else { throw ValidationError("--listen: expected HOST or HOST:PORT, got \(listen)") }
            if parsed.port != nil && port != nil { throw ValidationError("give the port once: in --listen HOST:PORT or in --port") }
        }
        if let defaultTtlMs, !CoordinatorConfig.ttlRange.contains(defaultTtlMs) {
            throw ValidationError("--default-ttl-ms must be within \(CoordinatorConfig.ttlRange)")
        }
    }

    /// The config file, or an empty one.
    private func loadConfig() throws -> DaemonConfig {
        guard let config else { return DaemonConfig() }
        do { return try DaemonConfig.load(path: config) } catch {
            printError("procrefd: \(error)")
            throw ExitCode.failure
        }
    }

    func run() async throws {
        if JournalLogHandler.standardErrorIsJournal() {
            LoggingSystem.bootstrap { JournalLogHandler(label: $0) }
        } else {
            LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        }
        var logger = Logger(label: "procrefd")
        logger.logLevel = logLevel
        signal(SIGHUP, SIG_IGN)  // until the reloader handles it: its default action kills
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(Self.metricsFactory(registry))

        let file = try loadConfig()
        let flags = commandLine
        let settings = ServeSettings(flags: flags, file: file)
        let (listen, port, durability, onExit) = (settings.listen, settings.port, settings.durability, settings.onExit)

        let directory = file.socketPath.map { StateDirectory(path: location.directory.path, socket: $0) } ?? location.directory
        let claim: DaemonClaim
        do { claim = try DaemonClaim.claim(directory) } catch {
            printError("procrefd: \(error)")
            if case .alreadyRunning = error { throw ExitCode(4) }
            throw ExitCode.failure
        }
        defer { claim.cleanup() }
        // What a service forks and orphans is reparented here, not to init: nothing of a
        // service escapes its stop. Those orphans are reaped on SIGCHLD (below, on the core's loop).
        do { try Children.becomeSubreaper() } catch { logger.warning("not a child subreaper: \(error)") }

        let store = try AuditStore(path: directory.database, durability: durability)
        // The state dir may be opened to others (0711, for a socket [access] shares): the
        // audit log stays the owner's alone.
        for file in [directory.database, directory.database + "-wal", directory.database + "-shm"] { chmod(file, 0o600) }
        let checkpointer = try store.checkpointInBackground()
        defer { checkpointer.stop() }
        let storageWatch = StorageWatch(store: store, ballast: Ballast(path: directory.ballast, bytes: Self.ballastBytes), logger: logger)
        defer { storageWatch.cancel() }
        let bootID = currentBootID()
        let previousRun = try store.read { try $0.lastRun() }
        let runID = try store.write { try $0.beginRun(pid: getpid(), bootID: bootID) }
        let token = try directory.loadOrCreateToken()
        // Always there, so reads that need a token can be given one that changes nothing.
        let readToken = try directory.loadOrCreateToken(file: directory.readTokenFile)
        var config = CoordinatorConfig(
            holderExecutable: holder ?? Self.siblingExecutable("procref-holder"), logsDirectory: directory.logs,
            scope: try directory.scope())
        config.serviceCgroups = serviceCgroups == .auto
        config.logPumpExecutable = Self.siblingExecutable("procref-logpump")
        config.doorExecutable = Self.siblingExecutable("procref-door")
        config.doorRendezvous = directory.doorRendezvous
        ServeSettings.applyLive(file, flags: flags, to: &config)
        Self.raiseDescriptorLimit(for: config.maxLeases, logger: logger)
        let coordinator = try Coordinator(config: config, store: store, logger: logger)
        try Children.reapOrphansOnExit(through: coordinator.loop)
        // The file is the truth about config services: without one, none remain.
        _ = try await coordinator.applyConfigServices(file.services, actor: .config)
        let report = await coordinator.reconcile(previousBootID: previousRun?.bootID, bootID: bootID)

        let shutdown = ShutdownSignals()
        var info = DaemonInfo(
            pid: getpid(), startedAt: Timestamp.format(Date()), stateDirectory: directory.path,
            singleton: claim.singleton, bootID: bootID, onExit: onExit, reconciled: report,
            serviceCgroup: coordinator.cgroupRoot)
        info.acquireTimeoutMs = config.acquireTimeoutMs
        let api = ControlAPI(
            coordinator: coordinator, store: store, access: Self.accessPolicy(file, token: token, readToken: readToken, listen: listen), daemon: info,
            metrics: { registry.emitToBuffer() }, longPollLimitMs: file.limits.maxWaitMs ?? EventQuery.maxWaitMs,
            maxStreams: file.limits.maxStreams ?? ControlAPI.defaultMaxStreams,
            hangups: coordinator.loop, requestStop: { shutdown.request(mode: $0) })

        let tcp = try Listener.tcp(host: listen, port: port)
        let unixFD = try Listener.unix(path: directory.socket, mode: file.socketMode ?? 0o600)
        if let group = file.socketGroup { try Files.setGroup(directory.socket, group: group) }
        var limits = HTTPServerLimits()
        limits.maxBodyBytes = file.limits.maxBodyBytes ?? limits.maxBodyBytes
        limits.connectionLimit = file.limits.connectionLimit.map(UInt32.init) ?? limits.connectionLimit
        limits.perIPConnectionLimit = file.limits.perIPConnectionLimit.map(UInt32.init) ?? limits.perIPConnectionLimit
        let servers = [
            try HTTPServer(listenFD: tcp.fd, transport: .tcp, limits: limits, defaultHeaders: ControlAPI.defaultHeaders, responder: api),
            try HTTPServer(listenFD: unixFD, transport: .unix, limits: limits, defaultHeaders: ControlAPI.defaultHeaders, responder: api),
        ]
        let address = listen.contains(":") ? "[\(listen)]:\(tcp.port)" : "\(listen):\(tcp.port)"
        try store.write { tx in
            if claim.singleton == .staleSocketCleaned {
                try tx.append(NewEvent(.daemonStaleSocketCleaned, pid: getpid(), detail: ["socket": .string(directory.socket)]))
            }
            try tx.append(NewEvent(.daemonStarted, pid: getpid(), detail: [
                "version": .string(ControlAPI.version), "singleton": .string(claim.singleton.rawValue),
                "tcp": .string(address), "socket": .string(directory.socket), "boot_id": .string(bootID),
                "boot_changed": .bool(report.bootChanged), "leases_readopted": .int(Int64(report.leasesReadopted)),
                "services_adopted": .int(Int64(report.servicesAdopted)), "on_exit": .string(onExit.rawValue),
            ]))
        }
        let auditSettings = SharedValue(file.audit)
        let reloader = ConfigReloader(path: self.config, running: file, setByFlags: flags.overriddenKeys, store: store, logger: logger) { [logger] new in
            let change = try await coordinator.applyConfigServices(new.services, actor: .config)
            coordinator.reconfigure { ServeSettings.applyLive(new, flags: flags, to: &$0) }
            Self.raiseDescriptorLimit(for: coordinator.maxLeases, logger: logger)
            api.update(
                access: Self.accessPolicy(new, token: token, readToken: readToken, listen: listen),
                longPollLimitMs: new.limits.maxWaitMs ?? EventQuery.maxWaitMs, maxStreams: new.limits.maxStreams ?? ControlAPI.defaultMaxStreams)
            auditSettings.set(new.audit)
            return change
        }
        logger.info("procrefd \(ControlAPI.version) listening on http://\(address) and unix:\(directory.socket), state in \(directory.path)")
        // One machine-readable line for scripts and tests that start procrefd on port 0.
        let line = #"{"ready":true,"pid":\#(getpid()),"tcp":"\#(address)","socket":"\#(directory.socket)"}"# + "\n"
        writeStandardOutput(Array(line.utf8))
        ServiceManagerNotify.send("READY=1\nMAINPID=\(getpid())\nSTATUS=listening on \(address)")

        let pruner = Self.startPruner(store: store, coordinator: coordinator, audit: auditSettings, logger: logger)
        let anchoring = ChainAnchor.start(store: store, settings: auditSettings, logger: logger)
        let trigger = await shutdown.next()
        reloader.cancel()
        pruner.cancel()
        anchoring.cancel()
        try await Self.stop(
            trigger: trigger, mode: trigger.mode ?? onExit, servers: servers, coordinator: coordinator, store: store, runID: runID,
            logger: logger)
    }

    /// The shutdown sequence: stop accepting, close the slot queues and the long-polls, let
    /// requests in flight finish (30 s at most), drain or hand off, stop the servers, and
    /// record the stop (then the chain's head goes to the log).
    static func stop(
        trigger: ShutdownTrigger, mode: ShutdownMode, servers: [HTTPServer], coordinator: Coordinator, store: AuditStore, runID: Int64,
        logger: Logger
    ) async throws {
        logger.info("stopping (\(trigger.reason)): \(mode.rawValue)")
        ServiceManagerNotify.send("STOPPING=1\nSTATUS=stopping (\(mode.rawValue))")
        for server in servers { server.stopAccepting() }
        coordinator.closeQueues()
        store.signal.close()  // ends long-polls and event streams
        for server in servers where !(await server.waitIdle(timeoutMs: 30_000)) {
            logger.warning("\(server.inFlight) requests still in flight after 30 s")
        }
        switch mode {
        case .drain: await coordinator.drain(actor: Principal.procrefd)
        case .handoff: await coordinator.handOff()
        }
        coordinator.stopLoop()
        for server in servers { server.stop() }
        try store.write { tx in
            try tx.append(NewEvent(.daemonStopped, pid: getpid(), detail: ["trigger": .string(trigger.reason), "mode": .string(mode.rawValue)]))
            try tx.endRun(id: runID, mode: mode.rawValue)
        }
        ChainAnchor.log(store, logger)
    }

    /// The flags that override the config file's keys.
    var commandLine: CommandLineSettings {
        CommandLineSettings(listen: listen, port: port, durability: durability, onExit: onExit, defaultTTLMs: defaultTtlMs)
    }

    /// Each live lease holds two descriptors here (its holder's pidfd and socket), plus the
    /// HTTP connections and the daemon's own.
    static func raiseDescriptorLimit(for maxLeases: Int, logger: Logger) {
        let wanted = 2 * maxLeases + 2_048
        do {
            let soft = try DescriptorLimit.raise(toAtLeast: wanted)
            if soft < wanted {
                logger.warning("open-file limit \(soft) allows about \((soft - 2_048) / 2) leases, below limits.max_leases \(maxLeases)")
            }
        } catch {
            logger.warning("cannot raise the open-file limit: \(error)")
        }
    }

    /// The API's access policy from `[security]`: which reads answer over TCP without a
    /// token, and which host names requests may use.
    static func accessPolicy(_ file: DaemonConfig, token: String, readToken: String, listen: String) -> AccessPolicy {
        let security = file.security
        let openReads: Set<ReadScope> =
            security.tcpReadsNeedToken ? [] : security.tcpOpenReads.map { Set($0.compactMap(ReadScope.init(rawValue:))) } ?? ReadScope.openByDefault
        return AccessPolicy(
            token: token, readToken: readToken, openReads: openReads,
            browsers: BrowserGuard(allowedHosts: security.allowedHosts, listenHost: listen), rules: file.access)
    }

    /// Prometheus through swift-metrics, with buckets that fit procrefd's latencies.
    static func metricsFactory(_ registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        factory.defaultValueHistogramBuckets = [1, 2, 4, 8, 16, 32, 64, 128]
        return factory
    }

    /// Every `audit.prune_interval_ms`: the audit log's retention, when set, in small
    /// batches (`audit.pruned` records each pass); and always the rows of leases that ended
    /// before the idempotency window.
    static func startPruner(store: AuditStore, coordinator: Coordinator, audit settings: SharedValue<DaemonConfig.Audit>, logger: Logger) -> Task<Void, Never> {
        Task.detached {
            while !Task.isCancelled {
                let audit = settings.current
                if audit.retention.isEnabled {
                    do { try store.prune(audit.retention) } catch { logger.error("audit pruning: \(error)") }
                }
                do { try coordinator.pruneEndedLeases() } catch { logger.error("pruning ended leases: \(error)") }
                try? await Task.sleep(for: .milliseconds(audit.pruneIntervalMs))
            }
        }
    }

    /// A program installed beside this one (`/proc/self/exe`'s directory).
    static func siblingExecutable(_ name: String) -> String {
        let own = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: own).deletingLastPathComponent().appendingPathComponent(name).path
    }
}

extension Durability: ExpressibleByArgument {}
extension ShutdownMode: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
