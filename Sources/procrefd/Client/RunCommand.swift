import ArgumentParser
import FoundationEssentials
import Glibc
import Posix
import ProcrefdClient
import SystemPackage

/// `procrefd run SERVICE -- CMD ARGS…`: what flock(1) and `consul lock` users expect. The
/// lease is bound to this process (`client_pid`), so it ends if either side crashes.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command under a lease: acquire, run, release, exit with the command's status.",
        discussion: """
            The lease is bound to this process (client_pid): if it dies, the lease ends. With --wait \
            it queues for a slot of a service with slots (and leaves the queue if it dies). A signal \
            sent to `run` (TERM, INT, HUP, QUIT, USR1, USR2) is passed on to the command; a terminal's \
            ^C already reaches both. With --ttl the lease is also kept alive every third of it.
            Exit codes: the command's own (128 + N when it died of signal N); 125 no lease (the \
            error is printed); 126 the command cannot run; 127 the command was not found.
            """)

    @OptionGroup var options: ClientOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "Also give the lease a TTL (500ms, 30s, 10m, 1h), kept alive while the command runs.") var ttl: TimeSpan?
    @Option(help: "A label for the lease holder. Default: run: CMD.") var holder: String?
    @Option(help: "When every slot of the service is taken, wait this long for one (30s, 10m), in arrival order.") var wait: TimeSpan?
    @Argument(parsing: .postTerminator, help: "The command, after --.") var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the command after --, e.g. procrefd run web -- ./job.sh") }
    }

    func run() throws {
        // Before anything else (and any thread): these signals are for the command.
        let signals: ForwardedSignals
        do { signals = try ForwardedSignals() } catch {
            printError("procrefd: \(error)")
            throw ExitCode(125)
        }
        let client = options.client
        var body: [String: Any] = ["client_pid": getpid(), "holder": holder ?? "run: \(command[0])"]
        if let ttl { body["ttl_ms"] = ttl.milliseconds }
        let lease: String
        do {
            lease = try client.acquire(service: service, body: body, waitMs: wait?.milliseconds ?? 0).object["id"] as? String ?? ""
        } catch {
            printError("procrefd: \(error)")
            throw ExitCode(125)
        }

        var spawn = Spawner.Options()
        (spawn.standardInput, spawn.standardOutput, spawn.standardError) = (0, 1, 2)
        let child: PidFD
        do {
            let identity = try Spawner().spawn(arguments: command, environment: ProcessInfo.processInfo.environment, options: spawn)
            child = try PidFD(child: identity)
        } catch {
            printError("procrefd: \(command[0]): \(error)")
            release(lease, client)
            throw ExitCode(error.errno == .noSuchFileOrDirectory ? 127 : 126)
        }

        let status = wait(for: child, forwarding: signals, keepalive: ttl.map { max(100, Int($0.milliseconds) / 3) }, lease, client)
        release(lease, client)
        switch status {
        case .exited(let code): throw ExitCode(code)
        case .signaled(let signal): throw ExitCode(128 + signal)
        }
    }

    /// Passes signals on and keeps a TTL lease alive until the command exits.
    private func wait(for child: PidFD, forwarding signals: ForwardedSignals, keepalive intervalMs: Int?, _ lease: String,
                      _ client: APIClient) -> ExitStatus
    {
        var nextKeepalive = intervalMs.map { monotonicMilliseconds() + Int64($0) }
        while true {
            if let status = child.reap() { return status }
            let timeout = nextKeepalive.map { Int(max(0, $0 - monotonicMilliseconds())) } ?? -1
            let ready = Descriptor.waitReadable(child.fd, signals.fd, timeoutMs: timeout)
            if ready.second, let (signal, fromKernel) = signals.next(), !fromKernel { try? child.signal(signal) }
            if let due = nextKeepalive, let intervalMs, monotonicMilliseconds() >= due {
                _ = try? client.send("POST", "/v1/leases/\(lease)/keepalive", timeoutMs: 10_000)
                nextKeepalive = monotonicMilliseconds() + Int64(intervalMs)
            }
        }
    }

    /// Gives the lease back; one that already ended (its TTL, say) needs nothing.
    private func release(_ lease: String, _ client: APIClient) {
        do { _ = try client.call("DELETE", "/v1/leases/\(lease)", timeoutMs: 60_000) } catch {
            if case .problem(let response) = error, response.status == 404 { return }
            printError("procrefd: release of \(lease): \(error)")
        }
    }
}
