import AuditStore
import FoundationEssentials
import Glibc
import Logging
import Posix
import LifecycleModel
import Synchronization
import Wire

/// The executor's start actions: spawn into the service's cgroup with its marker, adopt a
/// forking service's daemon from its pid file, probe its health.
extension ServiceExecutor {
    /// The machine's `spawn`. Leftovers of an earlier run (they would hold its port or
    /// files) are stopped first, and `pre_start` runs, by a task, which may take up to
    /// stop_timeout_ms and ready_timeout_ms: the loop takes other events meanwhile, and the
    /// spawn resumes when the task reports back, if that start is still the one waiting.
    func spawnAction(reason: StartReason, actor: Principal, _ state: inout LoopState) async {
        state.spawnGeneration += 1
        let strays = mainProcess == nil && processes.anyAlive(main: nil)
        let (preStart, timeoutMs, requires) = (definition.preStart, definition.readyTimeoutMs, definition.requires ?? [])
        let (group, cost) = (definition.capacityGroup, definition.cost ?? 1)
        guard strays || preStart != nil || !requires.isEmpty || group != nil else { return await spawn(reason: reason, actor: actor, &state) }
        // The longest wait its acquirers asked for, for room in its group.
        let waitMs = state.launched.values.map(\.order.request.waitMs).max() ?? 0
        state.logOffset = Files.size(logPath)  // a failed pre_start's output is this start's
        let generation = state.spawnGeneration
        let bridgeTTLMs = self.bridgeTTLMs
        Task {
            if let group, let groups = self.context.groups.current,
                case .full(let members) = await groups.admit(self, group: group, cost: cost, waitMs: waitMs, evict: { victim, _ in
                    _ = await victim.ask { .evictRequested($0) }
                })
            {
                return self.resume(.startRefused(.groupFull(group: group, members: members), generation: generation))
            }
            if strays { await self.stopStrays(actor: actor) }
            // What it requires runs first, all started at once.
            if !requires.isEmpty {
                switch await self.leaseDependencies(requires, clientPID: nil, ttlMs: bridgeTTLMs) {
                case .failed(let reason): return self.resume(.preStartFailed(reason, generation: generation))
                case .granted(let bridges): self.shared.withLock { $0.dependencyBridges += bridges }
                }
            }
            if let preStart, let failure = await self.runHook(.preStart, preStart, timeoutMs: timeoutMs, actor: actor).failure {
                return self.resume(.preStartFailed(failure, generation: generation))
            }
            self.resume(.spawnAfterStrays(reason, by: actor, generation: generation))
        }
    }

    /// Spawns the main process in its own group (and cgroup, where there is one) and records
    /// `service.starting`. Reports `spawned` or `spawnFailed`.
    func spawn(reason: StartReason, actor: Principal, _ state: inout LoopState) async {
        let definition = self.definition
        // A pid file left from an earlier run is told apart by its age, never unlinked:
        // root does not delete by path in a directory a service user may control.
        state.startedAtWallClock = UntrustedFile.now()
        state.logOffset = Files.size(logPath)
        ownershipProvenAt.store(-1, ordering: .relaxed)
        shared.withLock { $0.startFailure = nil }
        switch reason {
        case .recover: Telemetry.restarted(service: name, cause: "unhealthy")
        case .restart: Telemetry.restarted(service: name, cause: "crash")
        case .reset: Telemetry.restarted(service: name, cause: "reset")
        case .adminRestart: Telemetry.restarted(service: name, cause: "admin")
        case .acquire, .reconcile: break
        }
        let launcher: PidFD
        do {
            launcher = try spawnMain(definition, &state)
        } catch {
            shared.withLock { $0.startFailure = "spawn \(definition.start[0]): \(error)" }
            return send(.spawnFailed("\(error)"))
        }
        state.oomKillsAtStart = caps.oomKills() ?? 0
        setMain(launcher)
        FaultPoint.hit(.afterServiceSpawn)
        let count = kernelCount()
        let (name, tracking) = (self.name, processes.cgroup == nil ? "marker" : "cgroup")
        let starting = context.submitRecord { tx in
            try tx.updateServiceProcess(name: name, state: "starting", pid: launcher.pid, startTime: launcher.identity.startTime)
            var detail: [String: DetailValue] = [
                "argv0": .string(definition.start[0]), "reason": .string(reason.rawValue), "tracking": .string(tracking),
            ]
            if let count = count.value { detail["count"] = .int(Int64(count)) }
            try tx.append(NewEvent(.serviceStarting, service: name, pid: launcher.pid, actor: actor, detail: detail))
        }
        // Handled in this same step, before anything is published: a service with no health
        // check is ready at once, and its `service.ready` then commits with this record, in
        // one transaction.
        followUp(.spawned, after: starting, &state)
    }

    /// Spawns the main process: in its cgroups (with their caps), as its user, within its
    /// limits. A cap or user the host cannot give fails the start with the reason.
    private func spawnMain(_ definition: ServiceDefinition, _ state: inout LoopState) throws -> PidFD {
        // The pump's pipe closes here once the service has its copy.
        let activation = (front.withLock { $0 } as? SocketActivation)?.activationSockets
        if let output = startLogPump(definition, &state) {
            return try PidFD(child: try spawnAsService(definition.start, definition, newProcessGroup: true, output: output.raw, activation: activation))
        }
        return try PidFD(child: try spawnAsService(definition.start, definition, newProcessGroup: true, activation: activation))
    }

    /// Starts the service's `procref-logpump` on a new pipe and returns the pipe's write
    /// end, for the service's stdout and stderr. nil without a pump, or when it cannot
    /// start: the service then writes to its log file directly, unrotated (logged).
    private func startLogPump(_ definition: ServiceDefinition, _ state: inout LoopState) -> OwnedDescriptor? {
        let settings = context.settings.current
        guard let pump = settings.logPumpExecutable else { return nil }
        do {
            let pipe = try PipeEnds()  // the read end closes here once the pump has its copy
            var options = Spawner.Options()
            options.newSession = true  // like a holder: it outlives procrefd, so the service can always write
            options.standardInput = pipe.readEnd.raw
            let arguments = [pump, logPath, String(definition.logMaxBytes ?? settings.logMaxBytes), String(definition.logKeep ?? settings.logKeep)]
            let identity = try context.spawner.spawn(arguments: arguments, environment: [:], options: options)
            Children.release(identity.pid)  // it ends by itself at the end of the output
            state.logPump = try? PidFD(identity: identity)
            return pipe.writeEnd
        } catch {
            context.logger.warning("\(name): no log pump (\(error)); its output goes to \(logPath) unrotated")
            return nil
        }
    }

    /// Spawns `argv` as a process of the service: its cgroups, user, groups, umask, limits,
    /// working directory and environment, its output appended to the service's log. The
    /// main process and exec health checks both start here, so a check never runs with
    /// more rights than the service.
    /// - Parameter output: where its stdout and stderr go (the log pump's pipe); nil: the
    ///   log file, appended to.
    /// - Parameter activation: listening sockets the main process gets (socket activation).
    func spawnAsService(
        _ argv: [String], _ definition: ServiceDefinition, newProcessGroup: Bool, output: Int32? = nil,
        activation: (sockets: [Int32], names: [String])? = nil
    ) throws -> ProcessIdentity {
        try checkConfinement(definition)
        if let output { return try spawnAsService(argv, definition, newProcessGroup: newProcessGroup, writingTo: output, activation: activation) }
        let logFile = try Descriptor.openLog(logPath)  // closed once the child has its copy
        return try spawnAsService(argv, definition, newProcessGroup: newProcessGroup, writingTo: logFile.raw, activation: activation)
    }

    private func spawnAsService(
        _ argv: [String], _ definition: ServiceDefinition, newProcessGroup: Bool, writingTo log: Int32,
        activation: (sockets: [Int32], names: [String])?
    ) throws -> ProcessIdentity {
        var options = Spawner.Options()
        if let activation { (options.activationSockets, options.activationNames) = activation }
        options.newProcessGroup = newProcessGroup
        options.workingDirectory = definition.cwd
        options.standardOutput = log
        options.standardError = log
        let cgroup = try processes.spawnDescriptor()
        defer { if let cgroup { Descriptor.close(cgroup) } }
        options.cgroup = cgroup ?? -1
        let runAs = definition.runAs
        options.joinCgroups = try caps.prepare(runAs)
        defer { for fd in options.joinCgroups { Descriptor.close(fd) } }
        options.credentials = try runAs.credentials()
        options.resourceLimits = runAs.resourceLimits
        options.umask = runAs.umaskValue
        return try context.spawner.spawn(arguments: argv, environment: environment(definition), options: options)
    }

    /// pid_file mode (systemd's Type=forking), once the start command exited 0: adopted when
    /// the file names a live process of the service, which becomes the main process.
    ///
    /// The file is the service's, so root reads it as a stranger's: no link followed, no
    /// FIFO waited on, only a regular file of root or the service's user, written during
    /// this start. Those checks never block, so this runs on the executor's task.
    func adoptFromPidFile(startedAt: timespec) -> PidFileReading {
        guard let pidFile = definition.pidFile else { return .refused("no pid_file") }
        var owners: Set<uid_t> = [0, geteuid()]
        if let user = definition.runAs.user, let account = Accounts.user(user) { owners.insert(account.uid) }
        let bytes: [UInt8]
        do {
            bytes = try UntrustedFile.read(pidFile, owners: owners, notBefore: startedAt)
        } catch {
            switch error {
            case .missing, .stale: return .notYet
            default: return .refused("pid_file \(pidFile) \(error)")
            }
        }
        let text = String(decoding: bytes, as: UTF8.self).trimmed(newlines: true)
        guard let pid = Int32(text), pid > 1, processes.members(main: nil).contains(pid), let identity = ProcessIdentity.of(pid: pid)
        else { return .notYet }
        // Reparented to procrefd (a subreaper): its exit status is ours to read.
        Children.claim(pid)
        guard let main = try? PidFD(identity: identity) else { return .notYet }
        setMain(main)
        return .adopted
    }

    /// Runs the health check once and reports the result. Start-up probes (`readiness`) are
    /// not health failures.
    func probe(token: UInt64, readiness: Bool) async {
        let definition = self.definition
        guard let health = definition.health, let main = mainProcess?.pid else {
            return send(.probeFailed(token: token, reason: "not running"))
        }
        let now = monotonicMilliseconds()
        let provenAt = ownershipProvenAt.load(ordering: .relaxed)
        let proven = provenAt >= 0 && now - provenAt < 1_000
        let checker = HealthChecker(loop: context.loop)
        let failure = await checker.failure(
            of: health, main: main, members: { [processes] in processes.members(main: main) },
            spawnExec: { [self] argv in try spawnAsService(argv, definition, newProcessGroup: false) }, verifyOwnership: !proven)
        guard let failure else {
            if !proven { ownershipProvenAt.store(now, ordering: .relaxed) }
            return send(.probePassed(token: token))
        }
        if !readiness { Telemetry.healthCheckFailed(service: name) }
        send(.probeFailed(token: token, reason: failure))
    }

    /// Checked before every start of an API service, with the rules in force now (a reload
    /// may have tightened them since the definition was accepted): an offender does not
    /// start, and its start failure names the rule.
    func checkConfinement(_ definition: ServiceDefinition) throws(LifecycleError) {
        guard !membership.withLock({ $0.fromConfig }) else { return }
        do { try context.settings.current.confinement.check(definition) } catch {
            throw .startFailed(service: name, reason: "refused by [security]: \(error)")
        }
    }

    /// The rule of `[security]` this API service breaks now, if any.
    func confinementViolation() -> String? {
        do { try checkConfinement(definition) } catch { return error.description }
        return nil
    }

    /// The service's log file.
    var logPath: String { "\(context.logsDirectory)/\(name).log" }

    /// Once the main process has ended, waits (briefly) for the log pump to write what was
    /// left in its pipe: the output of a failed start is read from the file.
    func logPumpDrained(_ pump: PidFD?) async {
        guard let pump, shared.withLock({ $0.mainEnded }) else { return }
        _ = await context.loop.waitExited(pump, timeoutMs: 1_000)
    }

    /// What the last start wrote to the log: its last lines, at most 2 KiB.
    func outputOfLastStart(since offset: Int64) -> String {
        let window = Int(min(max(0, Files.size(logPath) - offset), 2_048))
        let bytes = Files.tail(logPath, lines: 10, window: window).bytes
        return String(decoding: bytes, as: UTF8.self).trimmed(newlines: true)
    }

    /// The service's environment: PATH, HOME, LANG, TZ from procrefd (HOME, USER and LOGNAME
    /// of its `user` when it names one), then its own `env`, then its marker (which the
    /// service cannot override).
    func environment(_ definition: ServiceDefinition) -> [String: String] {
        var environment = Self.inheritedEnvironment
        if let user = definition.runAs.user, let account = Accounts.user(user) {
            (environment["HOME"], environment["USER"], environment["LOGNAME"]) = (account.home, account.name, account.name)
        }
        environment.merge(definition.env) { $1 }
        let marker = processes.marker.split(separator: "=", maxSplits: 1)
        environment[String(marker[0])] = String(marker[1])
        return environment
    }

    /// Read once: building ProcessInfo's environment costs tens of µs, and health checks
    /// run on every acquire.
    static let inheritedEnvironment = ProcessInfo.processInfo.environment.filter { ["PATH", "HOME", "LANG", "TZ"].contains($0.key) }
}
