import Foundation
import Posix

/// Runs a service's health check once.
struct HealthChecker: Sendable {
    let spawner: Spawner

    /// nil when healthy, otherwise why not.
    func failure(of check: HealthCheck, environment: [String: String]) async -> String? {
        switch check.kind {
        case let .tcp(host, port):
            if case .failure(let error) = Probe.tcp(host: host, port: port, timeoutMs: check.timeoutMs) {
                return "tcp \(host):\(port): \(error.errno)"
            }
            return nil
        case .unix(let path):
            if case .failure(let error) = Probe.unix(path: path, timeoutMs: check.timeoutMs) {
                return "unix \(path): \(error.errno)"
            }
            return nil
        case .exec(let argv):
            return await runCommand(argv, environment: environment, timeoutMs: check.timeoutMs)
        }
    }

    private func runCommand(_ argv: [String], environment: [String: String], timeoutMs: Int) async -> String? {
        let spawner = self.spawner
        // The wait blocks a thread for at most timeoutMs; keep it off the cooperative pool.
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do {
                    let identity = try spawner.spawn(arguments: argv, environment: environment, options: .init())
                    let process = try PidFD(identity: identity)
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
