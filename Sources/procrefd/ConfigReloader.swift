import AuditStore
import Configuration
import Dispatch
import Foundation
import Glibc
import Lifecycle
import Logging

/// Reloads the config file's services on SIGHUP: added services appear, changed ones take
/// their new settings (see the README), removed ones refuse new leases and go once
/// unleased. A bad file is rejected with its error (`daemon.config_rejected`) and the
/// running config stays. Installed whether or not there is a config file: SIGHUP's default
/// action would kill the daemon, and logrotate and operators send it out of habit.
final class ConfigReloader: Sendable {
    private let source: DispatchSourceSignalBox
    private let task: Task<Void, Never>

    init(path: String?, coordinator: Coordinator, store: AuditStore, logger: Logger) {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        signal(SIGHUP, SIG_IGN)
        let signalSource = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        signalSource.setEventHandler { continuation.yield() }
        signalSource.resume()
        source = DispatchSourceSignalBox(source: signalSource)
        task = Task {
            for await _ in stream {
                guard let path else {
                    logger.notice("SIGHUP: procrefd runs without --config; nothing to reload")
                    _ = try? store.append(NewEvent(.daemonReloadSkipped, detail: ["reason": "no config file"]))
                    continue
                }
                await Self.reload(path: path, coordinator: coordinator, store: store, logger: logger)
            }
        }
    }

    func cancel() {
        source.source.cancel()
        task.cancel()
    }

    static func reload(path: String, coordinator: Coordinator, store: AuditStore, logger: Logger) async {
        do {
            let config = try DaemonConfig.load(path: path)
            let change = try await coordinator.applyConfigServices(config.services, actor: "config")
            logger.notice("config reloaded: added \(change.added), changed \(change.changed), removed \(change.removed), removing once unleased \(change.pendingRemoval)")
            _ = try? store.append(NewEvent(.daemonConfigReloaded, detail: [
                "path": .string(path), "added": .string(change.added.joined(separator: ",")),
                "changed": .string(change.changed.joined(separator: ",")), "removed": .string(change.removed.joined(separator: ",")),
                "pending_removal": .string(change.pendingRemoval.joined(separator: ",")),
            ]))
        } catch {
            logger.error("config rejected, keeping the running one: \(error)")
            _ = try? store.append(NewEvent(.daemonConfigRejected, detail: ["path": .string(path), "error": .string("\(error)")]))
        }
    }
}
