import AuditStore
import Dispatch
import FoundationEssentials
import Posix
import LifecycleModel
import Synchronization

/// A call tried on the calling thread (the HTTP thread that parsed the request), so the
/// common case costs no thread hop: see `Coordinator.acquireNow` and `releaseNow`.
public enum Attempt<T: Sendable>: Sendable {
    /// Nothing was done: make the call the usual way.
    case notAttempted
    case done(T)
    case failed(LifecycleError)
    /// Begun here; the rest must be awaited (it waits on something slow).
    case continuing(@Sendable () async throws(LifecycleError) -> T)
    /// Done here but for a commit another thread is making: that thread calls the given
    /// completion with the outcome right after it (no task waits).
    case whenCommitted(@Sendable (@escaping @Sendable (Result<T, LifecycleError>) -> Void) -> Void)
}

/// The lease fast path: an acquire on a ready service and a release that leaves it counted,
/// each run to its commit on the calling thread. It blocks that thread for a holder's
/// answer (a socket round trip) and the group commit, never for a start, a stop or a
/// probe: anything else takes the machine's way, through the service's loop.
extension Coordinator {
    /// `acquire` without the service's loop, when its machine would answer `ready` with no
    /// other action (see `Machine.grantsAtOnce`) and an idle holder is at hand.
    public func acquireNow(service name: String, request asked: AcquireRequest, actor: Principal) -> Attempt<LeaseGrant> {
        guard !shuttingDown.load(ordering: .relaxed), let service = registry.existing(name), service.grantsAtOnce else {
            return .notAttempted
        }
        var owned = asked
        owned.owner = actor
        let ttlMs: Int64?
        do {
            ttlMs = try validate(owned)
            owned.client = try openClient(owned)
        } catch { return .failed(error) }
        let request = owned
        let order = LeaseOrder(request: request, ttlMs: ttlMs, by: actor, idempotency: nil)
        do { try leases.reserve(name, owner: request.owner.partyKey, now: monotonicMilliseconds()) } catch {
            return .continuing { [self] () async throws(LifecycleError) -> LeaseGrant in
                Telemetry.refused(service: name, reason: "limit")
                throw await refused(error, service: name, actor: actor)
            }
        }
        let begun = DispatchTime.now().uptimeNanoseconds
        let slowly = { @Sendable [self] () async throws(LifecycleError) -> LeaseGrant in
            try await acquire(service: name, request: request, actor: actor, idempotency: nil)
        }
        switch issuer.launchNow(order, on: service) {
        case .noIdleHolder:
            leases.cancelReservation(name, owner: request.owner.partyKey)
            return .notAttempted
        case .failed:
            // A holder that failed took no reference: the usual way tries again and says why.
            leases.cancelReservation(name, owner: request.owner.partyKey)
            return .continuing(slowly)
        case .answerPending(let answer):
            return .continuing { [self] () async throws(LifecycleError) -> LeaseGrant in
                let pooled: HolderProcess
                do { pooled = try await answer() } catch {
                    leases.cancelReservation(name, owner: request.owner.partyKey)
                    return try await slowly()
                }
                let lease = issuer.lease(on: pooled, of: service, order)
                guard service.grantsAtOnce else {
                    await undoNow(lease, of: service, actor: actor, reservation: name)
                    return try await slowly()
                }
                let (grant, write) = submitNow(lease, of: service, order)
                return try await committedGrant(grant, lease: lease, of: service, actor: actor, write: write, begun: begun)
            }
        case .launched(let pooled):
            let lease = issuer.lease(on: pooled, of: service, order)
            // A stop may have begun before the reference was taken: then the machine decides.
            guard service.grantsAtOnce else {
                return .continuing { [self] () async throws(LifecycleError) -> LeaseGrant in
                    await undoNow(lease, of: service, actor: actor, reservation: name)
                    return try await slowly()
                }
            }
            let (grant, write) = submitNow(lease, of: service, order)
            let committed: Bool
            do { committed = try context.committedIfIdle(write) } catch {
                grantFailed(lease, of: service, actor: actor)
                return .failed(error)
            }
            guard committed else {
                // Another thread is committing: this write is in its next batch, and that
                // thread settles the lease and answers right after it.
                return .whenCommitted { [self] answer in
                    context.whenCommitted(write) { [self] error in
                        if let error {
                            grantFailed(lease, of: service, actor: actor)
                            return answer(.failure(error))
                        }
                        granted(lease, of: service, begun: begun)
                        answer(.success(grant))
                    }
                }
            }
            granted(lease, of: service, begun: begun)
            return .done(grant)
        }
    }

    /// Awaits the grant's commit, then settles the lease.
    private func committedGrant(
        _ grant: LeaseGrant, lease: Lease, of service: ServiceExecutor, actor: Principal, write: PendingWrite<Void>, begun: UInt64
    ) async throws(LifecycleError) -> LeaseGrant {
        do { try await context.committed(write) } catch {
            grantFailed(lease, of: service, actor: actor)
            throw error
        }
        granted(lease, of: service, begun: begun)
        return grant
    }

    /// The lease of a launched holder, in the book (the reservation turns into it) with its
    /// row and `lease.acquired` queued.
    private func submitNow(_ lease: Lease, of service: ServiceExecutor, _ order: LeaseOrder) -> (LeaseGrant, PendingWrite<Void>) {
        let count = service.kernelCount()
        let write = issuer.recordGrant(lease, count: count, started: false, waitedMs: nil, order)
        leases.insert(lease)
        return (LeaseGrant(lease: lease.info, count: count.value, started: false), write)
    }

    /// After the grant's commit: the lease goes active.
    private func granted(_ lease: Lease, of service: ServiceExecutor, begun: UInt64) {
        activate(lease)
        Telemetry.acquired(service: service.name, started: false, nanoseconds: DispatchTime.now().uptimeNanoseconds - begun)
    }

    /// The grant's commit failed: the lease leaves the book and its holder is given back.
    private func grantFailed(_ lease: Lease, of service: ServiceExecutor, actor: Principal) {
        leases.remove(lease.id)
        Task { await issuer.undo(lease, of: service, by: actor) }
    }

    /// Gives back the holder of a lease the fast path could not grant, with its reservation.
    private func undoNow(_ lease: Lease, of service: ServiceExecutor, actor: Principal, reservation name: String) async {
        await issuer.undo(lease, of: service, by: actor)
        leases.cancelReservation(name, owner: lease.ownerKey)
    }

    /// `release` without the service's loop: the holder is asked on its socket on this
    /// thread, and when the service is still counted afterwards, the end is committed here.
    /// On 1 → 0 (the machine stops the service) or a holder that does not answer at once,
    /// the rest is awaited.
    public func releaseNow(id: String, actor: Principal) -> Attempt<ReleaseResult> {
        guard let lease = leases[id], let pooled = lease.pooled, let service = registry.existing(lease.service),
            lease.beginManaging()
        else { return .notAttempted }
        let endedByItself = lease.exitedAlready
        let finish = { @Sendable [self] (status: ExitStatus?) async throws(LifecycleError) -> ReleaseResult in
            try await recordRelease(lease, of: service, holderExit: status, endedByItself: endedByItself, actor: actor)
        }
        guard let socket = pooled.beginExchange(HolderProtocol.releaseLine) else {
            return .continuing { [self] () async throws(LifecycleError) -> ReleaseResult in try await finish(await issuer.end(lease)) }
        }
        let answer = Descriptor.readLine(socket, timeoutMs: HolderPool.blockingWaitMs)
        guard case .line(let line) = answer, HolderProtocol.Reply(line) == .released else {
            return .continuing { [self] () async throws(LifecycleError) -> ReleaseResult in
                var line: String?
                switch answer {
                case .line(let text): line = text
                case .closed: line = nil
                case .timedOut: line = await context.loop.readLine(socket, timeoutMs: LeaseIssuer.releaseTimeoutMs - HolderPool.blockingWaitMs)
                }
                return try await finish(await issuer.concludeEnd(lease, pooled, answer: line))
            }
        }
        let status = issuer.returnToPool(lease, pooled)
        let (reason, count, write) = submitRelease(lease, of: service, holderExit: status, endedByItself: endedByItself, actor: actor)
        let rest = { @Sendable [self] () async throws(LifecycleError) -> ReleaseResult in
            try await finishRelease(lease, of: service, reason: reason, count: count, write: write, actor: actor)
        }
        // On 1 → 0 the machine stops the service: that is awaited.
        guard !count.isZero else { return .continuing(rest) }
        do {
            // Another thread committing: this write is in its next batch; that thread answers.
            guard try context.committedIfIdle(write) else {
                return .whenCommitted { [self] answer in
                    context.whenCommitted(write) { [self] error in
                        if let error { return answer(.failure(error)) }
                        answer(Result { () throws(LifecycleError) in try releaseResult(lease, reason: reason, count: count, stopped: false) })
                    }
                }
            }
            return .done(try releaseResult(lease, reason: reason, count: count, stopped: false))
        } catch {
            return .failed(error)
        }
    }
}
