import AuditStore
import FoundationEssentials
import Glibc
import Logging
import Posix
import Wire
import LifecycleModel

/// Ending leases: release, keepalive, holder exits, and the lease queries.
extension Coordinator {
    /// Releases a lease: its holder gives its reference back (count −1) and the release is
    /// committed; on 1 → 0 the service's machine stops it (or lets it linger), and the
    /// answer says whether it stopped.
    public func release(id: String, actor: Principal) async throws(LifecycleError) -> ReleaseResult {
        guard let lease = leases[id], lease.beginManaging() else { throw .unknownLease(id) }
        let service = try registry.service(named: lease.service)
        let endedByItself = lease.exitedAlready
        let status = await issuer.end(lease)
        return try await recordRelease(lease, of: service, holderExit: status, endedByItself: endedByItself, actor: actor)
    }

    /// After the holder gave its reference back (or ended): the lease's end is committed, and
    /// on 1 → 0 the service's machine stops the service (or lets it linger) first.
    func recordRelease(
        _ lease: Lease, of service: ServiceExecutor, holderExit status: ExitStatus?, endedByItself: Bool, actor: Principal
    ) async throws(LifecycleError) -> ReleaseResult {
        let (reason, count, write) = submitRelease(lease, of: service, holderExit: status, endedByItself: endedByItself, actor: actor)
        return try await finishRelease(lease, of: service, reason: reason, count: count, write: write, actor: actor)
    }

    /// Tells the machine of a 1 → 0 (it stops the service, or lets it linger) and waits for
    /// the release's commit.
    func finishRelease(
        _ lease: Lease, of service: ServiceExecutor, reason: LeaseEnd, count: KernelCount, write: PendingWrite<Void>, actor: Principal
    ) async throws(LifecycleError) -> ReleaseResult {
        var stopped = false
        if count.isZero {
            let answer = await service.ask { .lastReferenceGone(reason: "last_release", by: actor, $0) }
            stopped = answer == .done(stopped: true)
            await registry.removeIfPending(service)
        }
        try await context.committed(write)
        return try releaseResult(lease, reason: reason, count: count, stopped: stopped)
    }

    /// Reads the kernel count after a release and queues the lease's end.
    func submitRelease(
        _ lease: Lease, of service: ServiceExecutor, holderExit status: ExitStatus?, endedByItself: Bool, actor: Principal
    ) -> (LeaseEnd, count: KernelCount, PendingWrite<Void>) {
        let reason = LeaseEnd.ofRelease(holderExit: status, endedByItself: endedByItself, lease: lease)
        let count = service.kernelCount()
        return (reason, count, submitEnd(lease, reason: reason, count: count, status: status, actor: actor))
    }

    /// The release's answer. The holder's own deadline or its client's exit came first: that
    /// is how the lease ended, and what the log says; the client must not hear "released".
    func releaseResult(_ lease: Lease, reason: LeaseEnd, count: KernelCount, stopped: Bool) throws(LifecycleError) -> ReleaseResult {
        guard reason == .released else { throw .leaseEnded(lease.id, reason.rawValue) }
        return ReleaseResult(lease: lease.id, count: count.value, stoppedService: stopped)
    }

    /// Queues the end of a lease (its row and its event), marks it ended and takes it out of
    /// the book.
    func submitEnd(
        _ lease: Lease, reason: LeaseEnd, count: KernelCount, status: ExitStatus?, actor: Principal, extra: [String: DetailValue] = [:]
    ) -> PendingWrite<Void> {
        let (id, name, holderPID) = (lease.id, lease.service, lease.holder.pid)
        var detail = extra
        if let count = count.value { detail["count"] = .int(Int64(count)) }
        detail["holder_exit"] = .string(ExitStatus.describe(status))
        detail["ended_by"] = .string(reason.endedBy(actor, owner: lease.info.owner))
        let write = context.submitRecord { [detail] tx in
            try tx.endLease(id: id, reason: reason.rawValue)
            try tx.append(NewEvent(reason.eventKind, service: name, lease: id, pid: holderPID, actor: actor, detail: detail))
        }
        lease.setPhase(.ended)
        leases.remove(id)
        Telemetry.ended(service: name, reason: reason)
        registry.existing(name)?.slotFreed()
        return write
    }

    /// Pushes a TTL lease's deadline to now + TTL (the holder keeps its own deadline).
    public func keepalive(id: String, actor: Principal) async throws(LifecycleError) -> LeaseInfo {
        guard let lease = leases[id], lease.phase == .active else { throw .unknownLease(id) }
        guard let ttlMs = lease.info.ttlMs else { throw .leaseNotRenewable(id) }
        do { try lease.holder.signal(HolderProtocol.keepaliveSignal) } catch { throw .unknownLease(id) }
        let expiresAt = Timestamp.format(Date().addingTimeInterval(Double(ttlMs) / 1000))
        lease.update { $0 = $0.with(expiresAt: expiresAt) }
        let (service, pid) = (lease.service, lease.holder.pid)
        try await context.write { tx in
            try tx.updateLeaseExpiry(id: id, expiresAt: expiresAt)
            try tx.append(NewEvent(.leaseKeepalive, service: service, lease: id, pid: pid, actor: actor,
                                   detail: ["expires_at": .string(expiresAt)]))
        }
        return lease.info
    }

    public func leaseInfos(service: String? = nil) -> [LeaseInfo] {
        leases.all.map(\.info)
            .filter { service == nil || $0.service == service }
            .sorted { ($0.acquiredAt, $0.id) < ($1.acquiredAt, $1.id) }
    }

    public func leaseInfo(id: String) throws(LifecycleError) -> LeaseInfo {
        guard let lease = leases[id] else { throw .unknownLease(id) }
        return lease.info
    }

    // MARK: Holders

    /// Watches the exit of a holder the pool does not own (re-adopted after a restart).
    func watch(_ lease: Lease) throws(LifecycleError) {
        do {
            try context.loop.watchExit(of: lease.holder) { [weak self] status in
                if lease.holderExited(status) { self?.handleUnexpectedExit(lease) }
            }
        } catch {
            try? lease.holder.signal(SIGKILL)
            throw .kernel("cannot watch holder: \(error)")
        }
    }

    /// A holder ended on its own (TTL, client exit, crash): record it, and tell the service
    /// when the kernel count is now 0.
    func handleUnexpectedExit(_ lease: Lease) {
        guard lease.beginManaging() else { return }  // a release got there first
        Task { [self] in
            let status = lease.recordedExit
            let reason = status == nil ? lease.inferredEnd() : LeaseEnd.from(holderExit: status)
            let service = registry.existing(lease.service)
            // No service (removed meanwhile): nothing counts it any more.
            let count = service?.kernelCount() ?? .known(0)
            do { try await context.committed(submitEnd(lease, reason: reason, count: count, status: status, actor: Principal.procrefd)) } catch {
                context.logger.error("recording the end of holder \(lease.holder.pid): \(error)")
            }
            guard let service, count.isZero else { return }
            _ = await service.ask { .lastReferenceGone(reason: "last_\(reason.rawValue)", by: Principal.procrefd, $0) }
            await registry.removeIfPending(service)
        }
    }
}

extension LeaseInfo {
    func with(expiresAt: String) -> LeaseInfo {
        LeaseInfo(id: id, service: service, holder: holder, holderPID: holderPID, clientPID: clientPID,
                  ttlMs: ttlMs, acquiredAt: acquiredAt, expiresAt: expiresAt, owner: owner)
    }
}
