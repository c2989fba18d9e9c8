import AuditStore
import Dispatch
import FoundationEssentials
import LifecycleModel
import Posix
import Synchronization
import Wire

/// Acquiring a lease: validation, the limits, idempotency, a holder, the service's machine.
extension Coordinator {
    /// Grants a lease: a holder takes a reference (kernel count +1), the service's machine
    /// starts the service on 0 → 1 (or checks its health) and answers once it is ready, and
    /// `lease.acquired` is committed before returning.
    public func acquire(
        service name: String, request: AcquireRequest, actor: Principal, idempotency key: IdempotencyKey? = nil
    ) async throws(LifecycleError) -> LeaseGrant {
        var request = request
        request.owner = actor
        guard let key else { return try await measuredAcquire(service: name, request: request, actor: actor, idempotency: nil) }
        await idempotency.enter(key.key)
        defer { idempotency.leave(key.key) }
        if let previous = try replay(key, service: name) { return previous }
        return try await measuredAcquire(service: name, request: request, actor: actor, idempotency: key)
    }

    /// The grant an earlier request with the same key got, if any.
    private func replay(_ key: IdempotencyKey, service name: String) throws(LifecycleError) -> LeaseGrant? {
        let notBefore = Date().addingTimeInterval(-Double(config.idempotencyWindowMs) / 1000)
        let (previous, record): (IdempotencyRecord?, LeaseRecord?)
        do {
            (previous, record) = try context.store.read { reader in
                guard let previous = try reader.idempotencyKey(key.key, notBefore: notBefore) else { return (nil, nil) }
                return (previous, try reader.lease(id: previous.lease))
            }
        } catch {
            throw .storage("\(error)")
        }
        guard let previous else { return nil }
        guard previous.requestHash == key.requestHash, previous.service == name else { throw .idempotencyMismatch(key.key) }
        guard let record else { throw .storage("lease \(previous.lease) of key \(key.key) is missing") }
        var grant = LeaseGrant(lease: LeaseInfo(record: record), count: previous.count, started: previous.started)
        grant.replayed = true
        return grant
    }

    private func measuredAcquire(
        service name: String, request: AcquireRequest, actor: Principal, idempotency: IdempotencyKey?
    ) async throws(LifecycleError) -> LeaseGrant {
        let begun = DispatchTime.now().uptimeNanoseconds  // most acquires take well under 1 ms
        do {
            let grant = try await grant(service: name, request: request, actor: actor, idempotency: idempotency)
            Telemetry.acquired(service: name, started: grant.started, nanoseconds: DispatchTime.now().uptimeNanoseconds - begun)
            return grant
        } catch {
            if let reason = error.refusalReason { Telemetry.refused(service: name, reason: reason) }
            throw withHolders(error)
        }
    }

    /// A full group's refusal names who holds each running member, so the caller knows
    /// whom to ask.
    private func withHolders(_ error: LifecycleError) -> LifecycleError {
        guard case let .groupFull(service, group, members) = error else { return error }
        return .groupFull(service: service, group: group, members: members.map { member in
            GroupMember(
                service: member.service, cost: registry.existing(member.service)?.definition.cost ?? 1,
                leases: leases.leases(of: member.service).map(\.info))
        })
    }

    private func grant(
        service name: String, request asked: AcquireRequest, actor: Principal, idempotency: IdempotencyKey?
    ) async throws(LifecycleError) -> LeaseGrant {
        guard !shuttingDown.load(ordering: .relaxed) else { throw .shuttingDown }
        let service = try registry.service(named: name)
        let ttlMs = try validate(asked)
        var checked = asked
        checked.client = try openClient(asked)
        let request = checked
        try await reserve(name, actor: actor)
        var reserved = true
        defer { if reserved { leases.cancelReservation(name, owner: actor.partyKey) } }
        if service.membership.withLock({ $0.pendingRemoval }) { throw .serviceRemoving(name) }
        if let reason = service.snapshot.failureReason { throw .serviceFailed(service: name, reason: reason) }

        // The service's loop launches the holder when the machine gives it a slot (at once
        // without `slots`), and queues the grant's records as the machine answers `ready`.
        let order = LeaseOrder(request: request, ttlMs: ttlMs, by: actor, idempotency: idempotency)
        // A queued acquire has its own deadline (wait_ms); the start that may follow, the usual one.
        let outcome = await service.acquire(order, timeoutMs: request.waitMs + config.acquireTimeoutMs)
        let granted: ServiceExecutor.Granted
        switch outcome {
        case .granted(let grant): granted = grant
        case .launchFailed(let failure): throw failure
        case .refused(.busy): throw .timedOut("service \(name) busy for \(config.acquireTimeoutMs) ms")
        case .refused(.leftQueue(.serviceStopped)) where shuttingDown.load(ordering: .relaxed): throw .shuttingDown
        case .refused(let refusal): throw service.error(for: refusal)
        }
        let lease = granted.lease
        // In the book before the commit is awaited, so the next acquire's limit check counts it.
        leases.insert(lease)
        reserved = false
        do { try await context.committed(granted.write) } catch {
            leases.remove(lease.id)
            await issuer.undo(lease, of: service, by: actor)
            throw error
        }
        activate(lease)
        var grant = LeaseGrant(lease: lease.info, count: granted.count.value, started: granted.started)
        grant.waitedMs = granted.waitedMs
        return grant
    }

    /// A granted lease goes active. An exit that happened before was not handled: it is now.
    func activate(_ lease: Lease) {
        lease.setPhase(.active)
        if lease.exitedAlready { handleUnexpectedExit(lease) }
    }

    /// Reserves a place in the lease book, or records (folded) and throws the refusal.
    private func reserve(_ name: String, actor: Principal) async throws(LifecycleError) {
        do { try leases.reserve(name, owner: actor.partyKey, now: monotonicMilliseconds()) } catch {
            throw await refused(error, service: name, actor: actor)
        }
    }

    /// Records a refusal by the lease limits (folded: see `LeaseBook.Refusal`); the error to throw.
    func refused(_ refusal: LeaseBook.Refusal, service name: String, actor: Principal) async -> LifecycleError {
        if let folded = refusal.folded {
            await context.recordLogged(NewEvent(.leaseRefused, service: name, actor: actor, detail: [
                "reason": .string(refusal.reached.rawValue), "limit": .int(Int64(refusal.limit)),
                "suppressed_since_last": .int(Int64(folded)),
            ]))
        }
        return refusal.reached == .owner ? .userLimit(limit: refusal.limit) : .tooManyLeases(limit: refusal.limit)
    }

    func validate(_ request: AcquireRequest) throws(LifecycleError) -> Int64? {
        // Fail closed: a lease whose grant could not be recorded must not exist.
        let waiting = context.store.backlogCount
        guard waiting == 0 else { throw .auditUnavailable(waiting: waiting) }
        if request.holder.utf8.count > 128 {
            throw .invalidField(DefinitionError(field: "holder", message: "at most 128 bytes"))
        }
        if !(0...config.acquireTimeoutMs).contains(request.waitMs) {
            throw .invalidField(DefinitionError(field: "wait_ms", message: "must be within 0...\(config.acquireTimeoutMs) (limits.acquire_timeout_ms)"))
        }
        if let ttl = request.ttlMs, !CoordinatorConfig.ttlRange.contains(ttl) {
            throw .invalidField(DefinitionError(field: "ttl_ms", message: "must be within \(CoordinatorConfig.ttlRange)"))
        }
        if let pid = request.clientPID {
            guard pid > 0 else { throw .invalidField(DefinitionError(field: "client_pid", message: "must be > 0")) }
            guard ProcessIdentity.of(pid: pid)?.isAlive == true else { throw .clientNotRunning(pid) }
        }
        if request.ttlMs == nil && request.clientPID == nil { return config.defaultTTLMs }
        return request.ttlMs
    }

    /// The client as a pidfd, opened now and checked through it: its owner (when the caller
    /// may bind only its own processes) read while the pidfd shows it alive, so the pid
    /// checked is the process the holder will watch. nil without a client.
    func openClient(_ request: AcquireRequest) throws(LifecycleError) -> PidFD? {
        guard let pid = request.clientPID else { return nil }
        guard let identity = ProcessIdentity.of(pid: pid), let client = try? PidFD(identity: identity) else { throw .clientNotRunning(pid) }
        if let uid = request.clientOwner {
            guard ProcessIdentity.ownerUID(of: pid) == uid, identity.isAlive else { throw .clientNotPermitted(pid) }
        }
        return client
    }
}
