import AuditStore
import Configuration
import Dispatch
import FoundationEssentials
import Glibc
import Lifecycle
import Logging

/// Reloads the config file on SIGHUP. Services: added ones appear, changed ones take their
/// new settings (see the README), removed ones refuse new leases and go once unleased.
/// `[security]`, `[limits]` and `[audit]` apply to requests that start after the reload.
/// A key only a restart can apply (the listeners, durability, the shutdown mode) makes the
/// reload refuse, naming it; so does a bad file (`daemon.config_rejected`); either way the
/// running config stays whole. Installed whether or not there is a config file: SIGHUP's
/// default action would kill the daemon, and logrotate and operators send it out of habit.
final class ConfigReloader: Sendable {
    /// Applies a checked file: its services, then its security, limits and audit settings.
    typealias Apply = @Sendable (DaemonConfig) async throws -> ConfigServicesChange

    private let source: DispatchSourceSignalBox
    private let task: Task<Void, Never>

    /// - Parameters:
    ///   - running: the file as applied at start.
    ///   - setByFlags: keys given on the command line, which a file change cannot override.
    init(path: String?, running: DaemonConfig, setByFlags: Set<String>, store: AuditStore, logger: Logger, apply: @escaping Apply) {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        signal(SIGHUP, SIG_IGN)
        let signalSource = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        signalSource.setEventHandler { continuation.yield() }
        signalSource.resume()
        source = DispatchSourceSignalBox(source: signalSource)
        task = Task {
            var running = running
            for await _ in stream {
                guard let path else {
                    logger.notice("SIGHUP: procrefd runs without --config; nothing to reload")
                    _ = try? store.append(NewEvent(.daemonReloadSkipped, detail: ["reason": "no config file"]))
                    continue
                }
                if let applied = await Self.reload(path: path, running: running, setByFlags: setByFlags, store: store, logger: logger, apply: apply) {
                    running = applied
                }
            }
        }
    }

    func cancel() {
        source.source.cancel()
        task.cancel()
    }

    /// Returns the new config when it was applied, nil when refused.
    static func reload(
        path: String, running: DaemonConfig, setByFlags: Set<String>, store: AuditStore, logger: Logger, apply: Apply
    ) async -> DaemonConfig? {
        func reject(_ message: String, _ extra: [String: DetailValue] = [:]) {
            logger.error("config rejected, keeping the running one: \(message)")
            _ = try? store.append(NewEvent(.daemonConfigRejected, detail: ["path": .string(path), "error": .string(message)].merging(extra) { $1 }))
        }
        let config: DaemonConfig
        do { config = try DaemonConfig.load(path: path) } catch {
            reject("\(error)")
            return nil
        }
        let restartOnly = config.restartOnlyChanges(from: running, ignoring: setByFlags)
        guard restartOnly.isEmpty else {
            reject("\(restartOnly.joined(separator: ", ")) can only change at a restart", ["restart_keys": .string(restartOnly.joined(separator: ","))])
            return nil
        }
        do {
            let change = try await apply(config)
            let sections = [("security", config.security != running.security), ("limits", config.limits != running.limits),
                            ("audit", config.audit != running.audit)].filter(\.1).map(\.0)
            logger.notice("config reloaded: added \(change.added), changed \(change.changed), removed \(change.removed), removing once unleased \(change.pendingRemoval); settings changed: \(sections)")
            _ = try? store.append(NewEvent(.daemonConfigReloaded, detail: [
                "path": .string(path), "added": .string(change.added.joined(separator: ",")),
                "changed": .string(change.changed.joined(separator: ",")), "removed": .string(change.removed.joined(separator: ",")),
                "pending_removal": .string(change.pendingRemoval.joined(separator: ",")),
                "settings_changed": .string(sections.joined(separator: ",")),
            ]))
            return config
        } catch {
            reject("\(error)")
            return nil
        }
    }
}
