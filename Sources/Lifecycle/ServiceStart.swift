import AuditStore
import Foundation
import Posix

/// Starting a service: spawn into its cgroup with its marker, adopt a forking service's
/// daemon from its pid file, wait until healthy.
extension ManagedService {
    /// Starts the service and waits until its health check passes (without one, it is
    /// ready once running). The service runs in its own process group, in its own cgroup
    /// where there is one, with its marker in its environment. With `pid_file` the start
    /// command must exit 0 once the daemon it forked runs, and the file names the main
    /// process. On failure everything the start left is stopped and
    /// `service.start_failed` recorded. Call with `lock` held.
    func start(actor: String, count: Int, reason: String = "acquire") async throws(LifecycleError) {
        let definition = self.definition
        let environment = self.environment(definition)
        let begun = monotonicMilliseconds()
        // Leftovers of an earlier run would hold its port or files: nothing of it may run now.
        await stopStrays(actor: actor)
        if let pidFile = definition.pidFile { try? Files.remove(pidFile) }  // a stale one must not name the new process
        let logStart = Files.size(logPath)

        let launcher: PidFD
        do {
            launcher = try spawnMain(definition, environment: environment)
        } catch {
            setState(.stopped)
            try context.record(NewEvent(.serviceStartFailed, service: name, actor: actor, detail: ["reason": .string("spawn: \(error)")]))
            if reason != "restart" { noteFailedStart(actor: actor) }  // the restart loop counts its own
            throw .startFailed(service: name, reason: "spawn \(definition.start[0]): \(error)")
        }
        state.withLock {
            $0.process = launcher
            $0.exited = false
            $0.exitStatus = nil
            $0.state = .starting
            $0.ownershipProvenAt = nil
            $0.lastPassedAt = nil
        }
        watchExit(of: launcher)
        FaultPoint.hit(.afterServiceSpawn)
        try context.write { tx in
            try tx.updateServiceProcess(name: name, state: "starting", pid: launcher.pid, startTime: launcher.identity.startTime)
            try tx.append(NewEvent(.serviceStarting, service: name, pid: launcher.pid, actor: actor, detail: [
                "count": .int(Int64(count)), "argv0": .string(definition.start[0]), "reason": .string(reason),
                "tracking": .string(processes.cgroup == nil ? "marker" : "cgroup"),
            ]))
        }

        let deadline = begun + Int64(definition.readyTimeoutMs)
        var failure: String?
        if let pidFile = definition.pidFile {
            failure = await adoptForkedMain(launcher: launcher, pidFile: pidFile, deadline: deadline)
        }
        if failure == nil { failure = await waitReady(definition: definition, environment: environment, deadline: deadline) }
        if let failure {
            // Often the reason is only in what the service printed ("can't run as root").
            let output = outputSince(logStart)
            var detail: [String: DetailValue] = ["reason": .string(failure), "log": .string(logPath)]
            if !output.isEmpty { detail["log_tail"] = .string(output) }
            try context.record(NewEvent(.serviceStartFailed, service: name, pid: launcher.pid, actor: actor, detail: detail))
            await stop(actor: actor, reason: "start_failed")
            if reason != "restart" { noteFailedStart(actor: actor) }
            throw .startFailed(service: name, reason: output.isEmpty ? "\(failure) (nothing in \(logPath))"
                                                                  : "\(failure); last output in \(logPath): \(output)")
        }
        // Recorded before it shows: status never reports a state whose record is not committed.
        let main = state.withLock { $0.process ?? launcher }
        try context.write { tx in
            try tx.updateServiceProcess(name: name, state: "ready", pid: main.pid, startTime: main.identity.startTime)
            try tx.append(NewEvent(.serviceReady, service: name, pid: main.pid, actor: actor,
                                   detail: ["startup_ms": .int(monotonicMilliseconds() - begun)]))
        }
        state.withLock { state in
            state.state = .ready
            state.lastHealth = "ok"
            state.lastPassedAt = monotonicMilliseconds()
        }
    }

    /// The service's log file.
    var logPath: String { "\(context.logsDirectory)/\(name).log" }

    /// What this start wrote to the log after `offset`: its last lines, at most 2 KiB.
    private func outputSince(_ offset: Int64) -> String {
        let window = Int(min(max(0, Files.size(logPath) - offset), 2_048))
        let bytes = Files.tail(logPath, lines: 10, window: window).bytes
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func spawnMain(_ definition: ServiceDefinition, environment: [String: String]) throws(SystemCallError) -> PidFD {
        var options = Spawner.Options()
        options.newProcessGroup = true
        options.workingDirectory = definition.cwd
        let log = try Descriptor.openLog(logPath)
        defer { Descriptor.close(log) }
        options.standardOutput = log
        options.standardError = log
        let cgroup = try processes.spawnDescriptor()
        defer { if let cgroup { Descriptor.close(cgroup) } }
        options.cgroup = cgroup ?? -1
        let identity = try context.spawner.spawn(arguments: definition.start, environment: environment, options: options)
        return try PidFD(child: identity)
    }

    /// pid_file mode (systemd's Type=forking): waits for the start command to exit 0, then
    /// for the pid file to name a live process of the service, which becomes the main
    /// process. nil when it did, otherwise why not.
    private func adoptForkedMain(launcher: PidFD, pidFile: String, deadline: Int64) async -> String? {
        while !state.withLock({ $0.exited }) {
            if monotonicMilliseconds() >= deadline { return "the start command did not exit (pid_file mode expects it to once the daemon runs)" }
            try? await Task.sleep(for: .milliseconds(10))
        }
        let status = state.withLock { $0.exitStatus }
        guard status == .exited(code: 0) else {
            return "the start command ended with \(ExitStatus.describe(status)) (pid_file mode expects exit code 0)"
        }
        while true {
            if let text = readSmallFile(pidFile, limit: 64), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                pid > 1, processes.members(main: nil).contains(pid), let identity = ProcessIdentity.of(pid: pid)
            {
                // Reparented to procrefd (a subreaper): its exit status is ours to read.
                Children.claim(pid)
                if let main = try? PidFD(identity: identity) {
                    state.withLock {
                        $0.process = main
                        $0.exited = false
                        $0.exitStatus = nil
                    }
                    watchExit(of: main)
                    return nil
                }
            }
            if monotonicMilliseconds() >= deadline { return "\(pidFile) names no live process of the service" }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The service's environment: PATH, HOME, LANG, TZ from procrefd, then its own `env`,
    /// then its marker (which the service cannot override).
    func environment(_ definition: ServiceDefinition) -> [String: String] {
        var environment = Self.inheritedEnvironment
        environment.merge(definition.env) { $1 }
        let marker = processes.marker.split(separator: "=", maxSplits: 1)
        environment[String(marker[0])] = String(marker[1])
        return environment
    }

    /// Read once: building ProcessInfo's environment costs tens of µs, and health checks
    /// run on every acquire.
    static let inheritedEnvironment = ProcessInfo.processInfo.environment.filter { ["PATH", "HOME", "LANG", "TZ"].contains($0.key) }

    /// Polls the health check until it passes, the main process exits, or the deadline.
    /// Returns nil when ready, otherwise why not. Start-up polls are not health failures.
    private func waitReady(definition: ServiceDefinition, environment: [String: String], deadline: Int64) async -> String? {
        let checker = HealthChecker(spawner: context.spawner)
        var lastFailure = "no health check passed"
        while true {
            let (main, exited, status) = state.withLock { ($0.process?.pid, $0.exited, $0.exitStatus) }
            guard let main, !exited else { return "exited during start-up with \(ExitStatus.describe(status))" }
            guard let health = definition.health else { return nil }
            guard let failure = await checker.failure(of: health, main: main, members: { [processes] in processes.members(main: main) },
                                                      environment: environment)
            else { return nil }
            lastFailure = failure
            state.withLock { $0.lastHealth = failure }
            if monotonicMilliseconds() >= deadline {
                return "not healthy within \(definition.readyTimeoutMs) ms (last: \(lastFailure))"
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
