import AuditStore
import FoundationEssentials
import Logging
import Posix
import LifecycleModel
import Synchronization

/// A service's semaphore set removed from outside procrefd (`ipcrm -s`, or root's IPC_RMID).
///
/// The leases' references went with the set and cannot be re-attached: a holder's SEM_UNDO
/// entry belongs to the set it was taken on, and no operation on a new set can stand in for
/// it (a holder dying later would give nothing back to the new one). So each lease ends as
/// `lease.lost` with reason `semaphore_removed` and its holder is ended, a new set replaces
/// the old one (`service.semaphore_recreated`), and the machine hears a known 0: the service
/// lingers or stops by its own rules. Until then every count read is `unreadable`, which
/// never stops anything.
extension Coordinator {
    /// How often every service's count is read when nothing else reads it: a removed set
    /// sends no notice, so it is found by reading.
    static let semaphoreSweepMs = 1_000

    /// Reads every service's count every `semaphoreSweepMs` (a read that finds a set gone
    /// reports it through `LifecycleContext.semaphoreSetGone`).
    func sweepSemaphoreSets() {
        context.loop.schedule(afterMs: Self.semaphoreSweepMs) { [weak self] in
            guard let self, !shuttingDown.load(ordering: .relaxed) else { return }
            for service in registry.all { _ = service.kernelCount() }
            sweepSemaphoreSets()
        }
    }

    /// Ends the leases of a service whose set is gone and puts a new set in its place.
    func replaceRemovedSet(of name: String) async {
        await registry.lock.lock()
        defer { registry.lock.unlock() }
        guard !shuttingDown.load(ordering: .relaxed), let service = registry.existing(name) else { return }
        defer { service.rearmSetGoneReport() }
        let removed = service.semaphores
        // Gone for good, not a read that raced: IPC_STAT fails too (EINVAL, EIDRM).
        guard (try? removed.stat()) == nil else { return }
        context.logger.error("semaphore set \(removed.id) of \(name) was removed from outside procrefd: its leases are lost")
        var lost = 0
        for lease in leases.leases(of: name) where lease.beginManaging() {
            let status = await issuer.end(lease)
            let write = submitEnd(lease, reason: .lost, count: .known(0), status: status, actor: Principal.procrefd,
                                  extra: ["reason": "semaphore_removed", "semid": .int(Int64(removed.id))])
            do { try await context.committed(write) } catch { context.logger.error("cannot record the loss of \(lease.id): \(error)") }
            lost += 1
        }
        let renewed: SemaphoreSet
        do { renewed = try await registry.renewSemaphores(of: service) } catch {
            return context.logger.error("no new semaphore set for \(name): \(error)")
        }
        await context.writeLogged { [lost] tx in
            try tx.append(NewEvent(.serviceSemaphoreRecreated, service: name, detail: [
                "removed_semid": .int(Int64(removed.id)), "key": .int(Int64(renewed.key)), "semid": .int(Int64(renewed.id)),
                "leases_lost": .int(Int64(lost)),
            ]))
        }
        service.replaceSemaphores(renewed)
        service.slotFreed()
        _ = await service.ask { .lastReferenceGone(reason: "semaphore_removed", by: Principal.procrefd, $0) }
    }
}
