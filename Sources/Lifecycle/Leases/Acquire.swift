import AuditStore
import Foundation
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
            throw error
        }
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

        let order = ServiceExecutor.AcquireOrder(
            actor: actor, waitMs: request.waitMs, clientPID: request.clientPID,
            launch: { [self] () async throws(LifecycleError) -> Lease in try await launchHolder(for: service, request: request, ttlMs: ttlMs) },
            recordGrant: { [self] lease, count, started, waitedMs in
                submitGrant(lease.info, holder: lease.holder, count: count, started: started, waitedMs: waitedMs, actor: actor, idempotency: idempotency)
            },
            undo: { [self] lease in await undo(lease, of: service, actor: actor) })
        // A queued acquire has its own deadline (wait_ms); the start that may follow, the usual one.
        let result = await service.acquire(order, timeoutMs: request.waitMs + config.acquireTimeoutMs)
        if let failure = result.failure { throw failure }
        guard let lease = result.lease, case .ready(let started) = result.answer else {
            if let lease = result.lease { await undo(lease, of: service, actor: actor) }
            if case .refused(.busy) = result.answer { throw .timedOut("service \(name) busy for \(config.acquireTimeoutMs) ms") }
            if case .refused(.leftQueue(.serviceStopped)) = result.answer, shuttingDown.load(ordering: .relaxed) { throw .shuttingDown }
            if case .refused(let refusal) = result.answer { throw service.error(for: refusal) }
            throw .holder("unexpected answer \(result.answer)")
        }
        let count = result.count
        // Queued by the service's loop as it answered, with its step's records (one commit).
        let write = result.grantWrite ?? submitGrant(
            lease.info, holder: lease.holder, count: count, started: started, waitedMs: result.waitedMs, actor: actor, idempotency: idempotency)
        // In the book before the commit is awaited, so the next acquire's limit check counts it.
        leases.insert(lease)
        reserved = false
        do { try await context.committed(write) } catch {
            leases.remove(lease.id)
            await undo(lease, of: service, actor: actor)
            throw error
        }
        activate(lease)
        var grant = LeaseGrant(lease: lease.info, count: count, started: started)
        grant.waitedMs = result.waitedMs
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

    /// A holder holding its reference, watched, as a lease still `managed`.
    private func launchHolder(for service: ServiceExecutor, request: AcquireRequest, ttlMs: Int64?) async throws(LifecycleError) -> Lease {
        let pooled: HolderProcess
        do throws(HolderPool.Failure) {
            // An idle holder answers within microseconds: asked on this thread, without a hop
            // to the I/O loop and back.
            switch holders.launchNow(semaphoreID: service.semaphores.id, ttlMs: ttlMs, clientPID: request.clientPID, clientFD: request.client?.fd) {
            case .launched(let holder): pooled = holder
            case .answerPending(let answer): pooled = try await answer()
            case .failed(let failure): throw failure
            case .noIdleHolder:
                pooled = try await holders.launch(semaphoreID: service.semaphores.id, ttlMs: ttlMs, clientPID: request.clientPID, clientFD: request.client?.fd)
            }
        } catch {
            switch error {
            case .clientGone: throw .clientNotRunning(request.clientPID ?? 0)
            case .other(let message): throw .holder(message)
            }
        }
        return newLease(on: pooled, of: service, request: request, ttlMs: ttlMs)
    }

    /// The lease a launched holder holds (still `managed`).
    func newLease(on pooled: HolderProcess, of service: ServiceExecutor, request: AcquireRequest, ttlMs: Int64?) -> Lease {
        let now = Date()
        let info = LeaseInfo(
            id: Self.newLeaseID(), service: service.name, holder: request.holder, holderPID: pooled.process.pid,
            clientPID: request.clientPID, ttlMs: ttlMs, acquiredAt: Timestamp.format(now),
            expiresAt: ttlMs.map { Timestamp.format(now.addingTimeInterval(Double($0) / 1000)) }, owner: request.owner)
        let lease = Lease(info: info, holder: pooled.process, pooled: pooled)
        pooled.attach(lease)
        return lease
    }

    /// Queues the lease's row, `lease.acquired` and the idempotency record as one write.
    func submitGrant(
        _ info: LeaseInfo, holder: PidFD, count: Int, started: Bool, waitedMs: Int?, actor: Principal, idempotency: IdempotencyKey?
    ) -> PendingWrite<Void> {
        let idempotencyWindowMs = config.idempotencyWindowMs
        let now = Date()
        return context.submit { tx in
            var record = LeaseRecord(
                id: info.id, service: info.service, holder: info.holder, holderPID: holder.pid,
                holderStartTime: holder.identity.startTime, clientPID: info.clientPID, ttlMs: info.ttlMs,
                acquiredAt: info.acquiredAt, expiresAt: info.expiresAt)
            record.owner = info.owner
            try tx.insertLease(record)
            var detail: [String: DetailValue] = ["count": .int(Int64(count)), "started": .bool(started)]
            if let ttlMs = info.ttlMs { detail["ttl_ms"] = .int(ttlMs) }
            if let client = info.clientPID { detail["client_pid"] = .int(Int64(client)) }
            if !info.holder.isEmpty { detail["holder"] = .string(info.holder) }
            if let waitedMs { detail["waited_ms"] = .int(Int64(waitedMs)) }
            try tx.append(NewEvent(.leaseAcquired, service: info.service, lease: info.id, pid: holder.pid, actor: actor, detail: detail))
            if let idempotency {
                try tx.expireIdempotencyKeys(before: now.addingTimeInterval(-Double(idempotencyWindowMs) / 1000))
                try tx.saveIdempotencyKey(IdempotencyRecord(
                    key: idempotency.key, service: info.service, requestHash: idempotency.requestHash, lease: info.id,
                    count: count, started: started))
            }
        }
    }

    /// Ends the holder of a lease that was not granted; a service nobody counts any more is
    /// stopped (or lingers).
    func undo(_ lease: Lease, of service: ServiceExecutor, actor: Principal) async {
        await end(lease)
        service.slotFreed()
        if (try? service.kernelCount()) == 0 { service.send(.lastReferenceGone(reason: "acquire_failed", actor: actor, nil)) }
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

    /// `l_` + 16 hex digits that only grow (wall-clock µs, bumped past the last one) + 8
    /// random ones. Growing ids land at the right edge of the lease key and the events'
    /// lease index instead of on a random page of each: measured ~20 % off a commit here.
    static func newLeaseID() -> String {
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1_000_000))
        var last = lastLeaseStamp.load(ordering: .relaxed)
        var stamp: UInt64
        repeat {
            stamp = max(now, last + 1)
            let (exchanged, original) = lastLeaseStamp.compareExchange(expected: last, desired: stamp, ordering: .relaxed)
            if exchanged { break }
            last = original
        } while true
        var generator = SystemRandomNumberGenerator()
        let low = generator.next() as UInt32
        return String(unsafeUninitializedCapacity: 26) { buffer in
            buffer[0] = UInt8(ascii: "l")
            buffer[1] = UInt8(ascii: "_")
            for index in 0..<16 { buffer[2 + index] = hexDigits[Int((stamp >> UInt64(60 - 4 * index)) & 0xf)] }
            for index in 0..<8 { buffer[18 + index] = hexDigits[Int((low >> UInt32(28 - 4 * index)) & 0xf)] }
            return 26
        }
    }
}

/// The stamp of the newest lease id (see `Coordinator.newLeaseID`).
private let lastLeaseStamp = Atomic<UInt64>(0)

private let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
