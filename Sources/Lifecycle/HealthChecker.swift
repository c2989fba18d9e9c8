import Foundation
import Posix

/// Runs a service's health check once. Where it can, it also confirms that what answered is
/// the service itself: a listening socket held by another process (an orphan of an earlier
/// run, say) does not make the service healthy.
struct HealthChecker: Sendable {
    let spawner: Spawner

    /// nil when healthy, otherwise why not. `group` is the service's process group. With
    /// `verifyOwnership` false a successful connection is enough (the caller proved the
    /// listener's owner moments ago).
    func failure(of check: HealthCheck, group: Int32, environment: [String: String], verifyOwnership: Bool = true) async -> String? {
        guard Signals.groupExists(group) else { return "service process group \(group) is gone" }
        switch check.kind {
        case let .tcp(host, port):
            if case .failure(let error) = Probe.tcp(host: host, port: port, timeoutMs: check.timeoutMs) {
                return "tcp \(host):\(port): \(error.errno)"
            }
            return ownership(SocketOwnership.listeningInodes(tcpPort: port), group: group, what: "tcp port \(port)", verify: verifyOwnership)
        case .unix(let path):
            if case .failure(let error) = Probe.unix(path: path, timeoutMs: check.timeoutMs) {
                return "unix \(path): \(error.errno)"
            }
            return ownership(SocketOwnership.listeningInodes(unixPath: path), group: group, what: path, verify: verifyOwnership)
        case .http(let target):
            if let failure = httpFailure(target, timeoutMs: check.timeoutMs) { return failure }
            return ownership(
                SocketOwnership.listeningInodes(tcpPort: target.port), group: group, what: "tcp port \(target.port)",
                verify: verifyOwnership)
        case .exec(let argv):
            return await runCommand(argv, environment: environment, timeoutMs: check.timeoutMs)
        }
    }

    private func ownership(_ inodes: @autoclosure () -> Set<UInt64>, group: Int32, what: String, verify: Bool) -> String? {
        guard verify else { return nil }
        return SocketOwnership.group(group, holdsAnyOf: inodes()) ? nil : "\(what) answers, but not from the service's process group \(group)"
    }

    /// GET the URL; 2xx is healthy.
    private func httpFailure(_ target: HTTPTarget, timeoutMs: Int) -> String? {
        let hostHeader = target.host.contains(":") ? "[\(target.host)]:\(target.port)" : "\(target.host):\(target.port)"
        let request = "GET \(target.path) HTTP/1.1\r\nHost: \(hostHeader)\r\nConnection: close\r\nUser-Agent: procrefd-health\r\n\r\n"
        do {
            let reply = try SocketExchange.exchange(
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

    private func runCommand(_ argv: [String], environment: [String: String], timeoutMs: Int) async -> String? {
        let spawner = self.spawner
        // The wait blocks a thread for at most timeoutMs; keep it off the cooperative pool.
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do {
                    let identity = try spawner.spawn(arguments: argv, environment: environment, options: .init())
                    let process = try PidFD(child: identity)
                    guard let status = process.waitForExit(timeoutMs: timeoutMs) else {
                        try? process.signal(SIGKILL)
                        _ = process.waitForExit(timeoutMs: 1000)
                        continuation.resume(returning: "exec timed out after \(timeoutMs) ms")
                        return
                    }
                    continuation.resume(returning: status == .exited(code: 0) ? nil : "exec ended with \(status)")
                } catch {
                    continuation.resume(returning: "exec \(argv[0]): \(error)")
                }
            }
        }
    }
}
