import AuditStore
import Configuration
import Lifecycle
import Logging

/// Writes the audit chain's head (newest id and hash) to procrefd's own log at start, every
/// `audit.anchor_interval_ms`, and at stop. Under systemd that log is the journal, kept
/// outside the database: an edit that rewrote the chain's end through the file shows as a
/// head the journal never saw (`procrefd events verify` prints the head to compare).
enum ChainAnchor {
    static func log(_ store: AuditStore, _ logger: Logger) {
        guard let head = try? store.read({ try $0.chainHead() }) else { return }
        logger.notice("audit chain head: id \(head.id) hash \(head.hash)")
    }

    static func start(store: AuditStore, settings: SharedValue<DaemonConfig.Audit>, logger: Logger) -> Task<Void, Never> {
        Task.detached {
            log(store, logger)
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(settings.current.anchorIntervalMs))
                if !Task.isCancelled { log(store, logger) }
            }
        }
    }
}
