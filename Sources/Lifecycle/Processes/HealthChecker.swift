import FoundationEssentials
import Glibc
import Posix

/// Runs a service's health check once. Where it can, it also confirms that what answered is
/// the service itself: a listening socket held by another process (an orphan of an earlier
/// run, say) does not make the service healthy. Connects, exchanges and waits all go
/// through the I/O loop: a probe never holds a thread.
struct HealthChecker: Sendable {
    /// Starts an exec check's command the way the service itself is started (its user,
    /// groups, umask, limits and cgroup, its environment).
    typealias ExecSpawner = @Sendable ([String]) throws -> ProcessIdentity

    let loop: IOLoop

    /// nil when healthy, otherwise why not. `main` is the service's main process and
    /// `members` lists all of its processes: a listener held by any of them is the
    /// service's. With `verifyOwnership` false a successful connection is enough (the
    /// caller proved the listener's owner moments ago).
    func failure(
        of check: HealthCheck, main: Int32, members: @escaping @Sendable () -> Set<Int32>, spawnExec: ExecSpawner,
        verifyOwnership: Bool = true
    ) async -> String? {
        guard ProcessIdentity.of(pid: main)?.isAlive == true else { return "main process \(main) is gone" }
        let owner = Owner(main: main, members: members)
        switch check.kind {
        case let .tcp(host, port):
            if let error = await connectFailure(.tcp(host: host, port: port), timeoutMs: check.timeoutMs) {
                return "tcp \(host):\(port): \(error.errno)"
            }
            return ownership(SocketOwnership.listeningInodes(tcpPort: port), owner: owner, what: "tcp port \(port)", verify: verifyOwnership)
        case .unix(let path):
            if let error = await connectFailure(.unix(path: path), timeoutMs: check.timeoutMs) {
                return "unix \(path): \(error.errno)"
            }
            return ownership(SocketOwnership.listeningInodes(unixPath: path), owner: owner, what: path, verify: verifyOwnership)
        case .http(let target):
            if let failure = await httpFailure(target, timeoutMs: check.timeoutMs) { return failure }
            return ownership(
                SocketOwnership.listeningInodes(tcpPort: target.port), owner: owner, what: "tcp port \(target.port)",
                verify: verifyOwnership)
        case .exec(let argv):
            return await runCommand(argv, spawn: spawnExec, timeoutMs: check.timeoutMs)
        }
    }

    /// nil when a connection succeeds within `timeoutMs`.
    private func connectFailure(_ destination: SocketExchange.Destination, timeoutMs: Int) async -> SystemCallError? {
        do {
            Descriptor.close(try await loop.connect(destination, timeoutMs: timeoutMs))
            return nil
        } catch {
            return error
        }
    }

    /// Who may hold the listener: the main process, looked at first (it nearly always is
    /// the one), then every process of the service.
    private struct Owner {
        let main: Int32
        let members: @Sendable () -> Set<Int32>
    }

    private func ownership(_ inodes: @autoclosure () -> Set<UInt64>, owner: Owner, what: String, verify: Bool) -> String? {
        guard verify else { return nil }
        let inodes = inodes()
        if SocketOwnership.process(owner.main, holdsAnyOf: inodes) { return nil }
        if owner.members().contains(where: { $0 != owner.main && SocketOwnership.process($0, holdsAnyOf: inodes) }) { return nil }
        return "\(what) answers, but not from a process of the service (main pid \(owner.main))"
    }

    /// GET the URL; 2xx is healthy.
    private func httpFailure(_ target: HTTPTarget, timeoutMs: Int) async -> String? {
        let hostHeader = target.host.contains(":") ? "[\(target.host)]:\(target.port)" : "\(target.host):\(target.port)"
        let request = "GET \(target.path) HTTP/1.1\r\nHost: \(hostHeader)\r\nConnection: close\r\nUser-Agent: procrefd-health\r\n\r\n"
        do {
            let reply = try await loop.exchange(
                .tcp(host: target.host, port: target.port), request: Array(request.utf8), timeoutMs: timeoutMs,
                limit: 4096, enough: { $0.contains(10) })
            let statusLine = String(decoding: reply.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
            let parts = statusLine.split(separator: " ")
            guard parts.count >= 2, let status = Int(parts[1]) else { return "http \(target.url): no HTTP status line" }
            return (200..<300).contains(status) ? nil : "http \(target.url): status \(status)"
        } catch {
            return "http \(target.url): \(error.errno)"
        }
    }

    /// Runs the command; exit code 0 is healthy. Past the timeout it is stopped (the one
    /// `Teardown`), and unhealthy.
    private func runCommand(_ argv: [String], spawn: ExecSpawner, timeoutMs: Int) async -> String? {
        let process: PidFD
        do {
            process = try PidFD(child: try spawn(argv))
        } catch {
            return "exec \(argv[0]): \(error)"
        }
        guard await loop.waitExited(process, timeoutMs: timeoutMs) else {
            _ = await Teardown(loop: loop).stop(process.identity, signal: SIGKILL, timeoutMs: Teardown.killWaitMs)
            _ = process.reap()
            return "exec timed out after \(timeoutMs) ms"
        }
        let status = process.reap()
        return status == .exited(code: 0) ? nil : "exec ended with \(ExitStatus.describe(status))"
    }
}
