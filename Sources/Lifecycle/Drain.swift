import AuditStore
import FoundationEssentials
import Logging
import Posix
import LifecycleModel
import Synchronization

/// How procrefd leaves: hand-off (everything stays for the next procrefd) or drain.
extension Coordinator {
    /// The first step of any shutdown: new acquires are refused, and queued ones answered
    /// (503 shutting-down, `lease.queue_left` reason shutdown) instead of holding the
    /// HTTP server's wait for requests in flight.
    public func closeQueues() {
        shuttingDown.store(true, ordering: .relaxed)
        for service in registry.all { service.send(.queueClosed) }
    }

    /// Hand-off: refuse new acquires and leave holders and services running for the next
    /// procrefd to re-adopt (their rows stay live in SQLite).
    public func handOff() async {
        shuttingDown.store(true, ordering: .relaxed)
        await holders.shutdown()
        // Front doors go on serving, listening sockets and connections, and come back to
        // the next procrefd's rendezvous.
        rendezvous?.close()
        for service in registry.all { service.front.withLock { $0 }?.release() }
    }

    /// Drains: revokes every lease, stops every service, removes the semaphore sets.
    public func drain(actor: Principal) async {
        shuttingDown.store(true, ordering: .relaxed)
        await holders.shutdown()
        rendezvous?.close()
        for service in registry.all {
            service.front.withLock { $0 }?.close(stopConnections: true)
            for lease in leases.leases(of: service.name) where lease.beginManaging() {
                let status = await issuer.end(lease)
                let count = service.kernelCount()
                let write = submitEnd(lease, reason: .revoked, count: count, status: status, actor: actor, extra: ["reason": "shutdown"])
                do { try await context.committed(write) } catch {
                    context.logger.error("cannot record revocation of \(lease.id): \(error)")
                }
            }
            _ = await service.ask { .stopRequested(reason: "shutdown", by: actor, $0) }
            service.processes.removeCgroup()
            service.caps.removeV1Groups()
            do { try service.semaphores.remove() } catch {
                context.logger.error("cannot remove semaphore set of \(service.name): \(error)")
            }
        }
        try? context.cgroupRoot?.remove()
    }

    /// Ends the core's I/O thread, once drained or handed off: nothing is watched after it.
    public func stopLoop() { context.loop.shutdown() }
}
