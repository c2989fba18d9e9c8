import AuditStore
import Foundation
import Logging
import Posix
import Synchronization

/// Leases: acquire (limits, idempotency), release, keepalive, holder exits, shutdown.
extension Coordinator {
    // MARK: Leases

    /// Throws `tooManyLeases` when the table (plus `pending` acquires of other services) is at
    /// a limit. Refusals are audited, at most one `lease.refused` per service per second (the
    /// next one says how many were folded into it), so a flood cannot flood the log.
    func checkLimits(service name: String, pending: Int, actor: String) throws(LifecycleError) {
        let (total, onService) = leases.withLock { table in
            (table.count, table.count(of: name))
        }
        let overTotal = total + pending >= config.maxLeases
        guard overTotal || onService >= config.maxLeasesPerService else { return }
        let limit = overTotal ? config.maxLeases : config.maxLeasesPerService
        let now = monotonicMilliseconds()
        let folded = refusals.withLock { refusals -> Int? in
            var entry = refusals[name] ?? (lastRecorded: nil, suppressed: 0)
            defer { refusals[name] = entry }
            if let last = entry.lastRecorded, now - last < 1_000 {
                entry.suppressed += 1
                return nil
            }
            let suppressed = entry.suppressed
            entry = (now, 0)
            return suppressed
        }
        if let folded {
            context.recordLogged(NewEvent(.leaseRefused, service: name, actor: actor, detail: [
                "reason": .string(overTotal ? "max_leases" : "max_leases_per_service"), "limit": .int(Int64(limit)),
                "suppressed_since_last": .int(Int64(folded)),
            ]))
        }
        throw .tooManyLeases(limit: limit)
    }

    /// Grants a lease: spawns a holder (kernel count +1), starts the service on 0 → 1 and
    /// waits until it is ready, then records `lease.acquired` before returning.
    public func acquire(
        service name: String, request: AcquireRequest, actor: String, idempotency: IdempotencyKey? = nil
    ) async throws(LifecycleError) -> LeaseGrant {
        guard let idempotency else { return try await measuredAcquire(service: name, request: request, actor: actor, idempotency: nil) }
        // One request per key at a time: a concurrent retry waits for the first to finish.
        while !inFlightKeys.withLock({ $0.insert(idempotency.key).inserted }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
        defer { inFlightKeys.withLock { _ = $0.remove(idempotency.key) } }

        let notBefore = Date().addingTimeInterval(-Double(config.idempotencyWindowMs) / 1000)
        let previous: IdempotencyRecord?
        do { previous = try context.store.read { try $0.idempotencyKey(idempotency.key, notBefore: notBefore) } } catch {
            throw .storage("\(error)")
        }
        if let previous {
            guard previous.requestHash == idempotency.requestHash, previous.service == name else {
                throw .idempotencyMismatch(idempotency.key)
            }
            let record: LeaseRecord?
            do { record = try context.store.read { try $0.lease(id: previous.lease) } } catch { throw .storage("\(error)") }
            guard let record else { throw .storage("lease \(previous.lease) of key \(idempotency.key) is missing") }
            var grant = LeaseGrant(
                lease: LeaseInfo(
                    id: record.id, service: record.service, holder: record.holder, holderPID: record.holderPID,
                    clientPID: record.clientPID, ttlMs: record.ttlMs, acquiredAt: record.acquiredAt, expiresAt: record.expiresAt),
                count: previous.count, started: previous.started)
            grant.replayed = true
            return grant
        }
        return try await measuredAcquire(service: name, request: request, actor: actor, idempotency: idempotency)
    }

    func measuredAcquire(
        service name: String, request: AcquireRequest, actor: String, idempotency: IdempotencyKey?
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

    func grant(
        service name: String, request: AcquireRequest, actor: String, idempotency: IdempotencyKey?
    ) async throws(LifecycleError) -> LeaseGrant {
        guard !shuttingDown.load(ordering: .relaxed) else { throw .shuttingDown }
        let service = try service(named: name)
        let ttlMs = try validate(request)
        // Refuse at once when already full, without queueing behind the service lock.
        try checkLimits(service: name, pending: 0, actor: actor)
        let granted = try await grantUnderLock(service, request: request, ttlMs: ttlMs, actor: actor, idempotency: idempotency)
        // The commit is awaited outside the service lock: the next acquire's work overlaps
        // it and their writes can share a commit; the queue keeps their order.
        do { try await context.committed(granted.write) } catch {
            await undoGrant(granted.lease, of: service, actor: actor)
            throw error
        }
        granted.lease.setPhase(.active)
        // An exit that happened before the lease became active was not handled: handle it now.
        if granted.lease.exitedAlready { handleUnexpectedExit(granted.lease) }
        return LeaseGrant(lease: granted.lease.info, count: granted.count, started: granted.started)
    }

    /// A lease whose holder holds its reference, in the table (still `managed`), with its
    /// record queued.
    struct PendingGrant {
        let lease: Lease
        let write: PendingWrite<Void>
        let count: Int
        let started: Bool
    }

    /// The part of an acquire that decides (limits, kernel count, start or health check) and
    /// fixes the order of its record, under the service lock.
    func grantUnderLock(
        _ service: ManagedService, request: AcquireRequest, ttlMs: Int64?, actor: String, idempotency: IdempotencyKey?
    ) async throws(LifecycleError) -> PendingGrant {
        let name = service.name
        guard await service.lock.lock(timeoutMs: config.acquireTimeoutMs) else {
            throw .timedOut("service \(name) busy for \(config.acquireTimeoutMs) ms")
        }
        defer { service.lock.unlock() }
        // The exact check: this service's acquires are serialised by its lock; acquires on
        // other services in flight hold a slot of the total until their lease is in the table.
        let pending = acquiresInFlight.add(1, ordering: .relaxed).newValue
        defer { acquiresInFlight.subtract(1, ordering: .relaxed) }
        try checkLimits(service: name, pending: pending - 1, actor: actor)
        if service.state.withLock({ $0.pendingRemoval }) { throw .serviceRemoving(name) }
        if let reason = service.failureReason { throw .serviceFailed(service: name, reason: reason) }
        try await service.lockKernel()
        defer { service.unlockKernel() }

        let holder: PidFD
        do {
            holder = try holders.launch(semaphoreID: service.semaphores.id, ttlMs: ttlMs, clientPID: request.clientPID)
        } catch {
            switch error {
            case .clientGone: throw .clientNotRunning(request.clientPID ?? 0)
            case .other(let message): throw .holder(message)
            }
        }
        let now = Date()
        let info = LeaseInfo(
            id: Self.newLeaseID(), service: name, holder: request.holder, holderPID: holder.pid,
            clientPID: request.clientPID, ttlMs: ttlMs, acquiredAt: Timestamp.format(now),
            expiresAt: ttlMs.map { Timestamp.format(now.addingTimeInterval(Double($0) / 1000)) })
        let lease = Lease(info: info, holder: holder)
        try watch(lease)

        do {
            let count = try service.kernelCount()
            var started = false
            if !service.isRunning {
                try await service.start(actor: actor, count: count)
                started = true
            } else {
                // Every acquire but the one that starts the service checks its health.
                service.cancelLinger()
                if let failure = await service.checkHealth() {
                    try await service.recover(actor: actor, failure: failure, count: count)
                }
            }
            let idempotencyWindowMs = config.idempotencyWindowMs
            let write = context.submit { [started] tx in
                try tx.insertLease(LeaseRecord(
                    id: info.id, service: name, holder: info.holder, holderPID: holder.pid,
                    holderStartTime: holder.identity.startTime, clientPID: info.clientPID, ttlMs: ttlMs,
                    acquiredAt: info.acquiredAt, expiresAt: info.expiresAt))
                var detail: [String: DetailValue] = ["count": .int(Int64(count)), "started": .bool(started)]
                if let ttlMs { detail["ttl_ms"] = .int(ttlMs) }
                if let client = info.clientPID { detail["client_pid"] = .int(Int64(client)) }
                if !info.holder.isEmpty { detail["holder"] = .string(info.holder) }
                try tx.append(NewEvent(.leaseAcquired, service: name, lease: info.id, pid: holder.pid, actor: actor, detail: detail))
                if let idempotency {
                    try tx.expireIdempotencyKeys(before: now.addingTimeInterval(-Double(idempotencyWindowMs) / 1000))
                    try tx.saveIdempotencyKey(IdempotencyRecord(
                        key: idempotency.key, service: name, requestHash: idempotency.requestHash, lease: info.id,
                        count: count, started: started))
                }
            }
            // In the table before the lock goes, so the next acquire's limit check counts it.
            leases.withLock { $0[info.id] = lease }
            return PendingGrant(lease: lease, write: write, count: count, started: started)
        } catch {
            await undoHolder(lease, of: service, actor: actor)
            throw error
        }
    }

    /// A grant whose record could not be committed: its holder ends, and a service nobody
    /// counts any more is stopped.
    func undoGrant(_ lease: Lease, of service: ManagedService, actor: String) async {
        await service.lock.lock()
        defer { service.lock.unlock() }
        leases.withLock { _ = $0.removeValue(forKey: lease.id) }
        guard (try? await service.lockKernel()) != nil else {
            await end(lease, signal: SIGTERM)
            return
        }
        defer { service.unlockKernel() }
        await undoHolder(lease, of: service, actor: actor)
    }

    /// Ends a holder whose lease was not granted. Call with the service and kernel locks held.
    func undoHolder(_ lease: Lease, of service: ManagedService, actor: String) async {
        // The holder's exit gives the count back; a service nobody counts is stopped.
        await end(lease, signal: SIGTERM)
        if (try? service.kernelCount()) == 0 {
            await service.lastReferenceGone(actor: actor, reason: "acquire_failed")
        }
    }

    /// Releases a lease: its holder exits (count −1); on 1 → 0 the service is stopped.
    public func release(id: String, actor: String) async throws(LifecycleError) -> ReleaseResult {
        guard let lease = leases.withLock({ $0[id] }), lease.beginManaging() else { throw .unknownLease(id) }
        let service = try service(named: lease.service)
        let (write, count, ended) = try await releaseUnderLock(lease, of: service, actor: actor)
        // As for acquires, the commit is awaited outside the service lock, in queue order.
        try await context.committed(write)
        // The holder's own deadline or its client's exit came first: that is how the lease
        // ended, and what the log says; the client must not hear "released".
        guard ended == .released else { throw .leaseEnded(id, ended.rawValue) }
        return ReleaseResult(lease: id, count: count, stoppedService: count == 0 && !service.isRunning)
    }

    /// Ends the holder, reads the count, queues the record, and on 1 → 0 stops the service.
    private func releaseUnderLock(
        _ lease: Lease, of service: ManagedService, actor: String
    ) async throws(LifecycleError) -> (PendingWrite<Void>, Int, LeaseEnd) {
        await service.lock.lock()
        defer { service.lock.unlock() }
        try await service.lockKernel()
        defer { service.unlockKernel() }

        let endedByItself = lease.exitedAlready
        let status = await end(lease, signal: SIGTERM)
        let reason = LeaseEnd.ofRelease(holderExit: status, endedByItself: endedByItself, lease: lease)
        let count = try service.kernelCount()
        let (id, name, holderPID) = (lease.id, service.name, lease.holder.pid)
        let write = context.submit { [reason] tx in
            try tx.endLease(id: id, reason: reason.rawValue)
            try tx.append(NewEvent(reason.eventKind, service: name, lease: id, pid: holderPID, actor: actor,
                                   detail: ["count": .int(Int64(count)), "holder_exit": .string(ExitStatus.describe(status))]))
        }
        leases.withLock { _ = $0.removeValue(forKey: id) }
        Telemetry.ended(service: name, reason: reason)
        if count == 0 {
            await service.lastReferenceGone(actor: actor, reason: "last_release")
            await removeIfPending(service)
        }
        return (write, count, reason)
    }

    /// Pushes a TTL lease's deadline to now + TTL (the holder keeps its own deadline).
    public func keepalive(id: String, actor: String) throws(LifecycleError) -> LeaseInfo {
        guard let lease = leases.withLock({ $0[id] }), lease.phase == .active else { throw .unknownLease(id) }
        guard let ttlMs = lease.info.ttlMs else { throw .leaseNotRenewable(id) }
        do { try lease.holder.signal(SIGUSR1) } catch { throw .unknownLease(id) }
        let expiresAt = Timestamp.format(Date().addingTimeInterval(Double(ttlMs) / 1000))
        lease.update { $0 = $0.with(expiresAt: expiresAt) }
        try context.write { tx in
            try tx.updateLeaseExpiry(id: id, expiresAt: expiresAt)
            try tx.append(NewEvent(.leaseKeepalive, service: lease.service, lease: id, pid: lease.holder.pid,
                                   actor: actor, detail: ["expires_at": .string(expiresAt)]))
        }
        return lease.info
    }

    public func leaseInfos(service: String? = nil) -> [LeaseInfo] {
        leases.withLock { Array($0.values) }.map(\.info)
            .filter { service == nil || $0.service == service }
            .sorted { ($0.acquiredAt, $0.id) < ($1.acquiredAt, $1.id) }
    }

    public func leaseInfo(id: String) throws(LifecycleError) -> LeaseInfo {
        guard let lease = leases.withLock({ $0[id] }) else { throw .unknownLease(id) }
        return lease.info
    }

    // MARK: Shutdown

    /// Hand-off: refuse new acquires and leave holders and services running for the next
    /// procrefd to re-adopt (their rows stay live in SQLite).
    public func handOff() {
        shuttingDown.store(true, ordering: .relaxed)
        holders.shutdown()
    }

    /// Drains: revokes every lease, stops every service, removes the semaphore sets.
    public func drain(actor: String) async {
        shuttingDown.store(true, ordering: .relaxed)
        holders.shutdown()
        for service in services.withLock({ Array($0.values) }) {
            await service.lock.lock()
            let owned = leases.withLock { table in table.values.filter { $0.service == service.name } }
            for lease in owned where lease.beginManaging() {
                let status = await end(lease, signal: SIGTERM)
                let count = (try? service.kernelCount()) ?? -1
                do {
                    try context.write { tx in
                        try tx.endLease(id: lease.id, reason: LeaseEnd.revoked.rawValue)
                        try tx.append(NewEvent(.leaseRevoked, service: service.name, lease: lease.id, pid: lease.holder.pid,
                                               actor: actor, detail: ["count": .int(Int64(count)), "reason": "shutdown",
                                                                      "holder_exit": .string(ExitStatus.describe(status))]))
                    }
                } catch {
                    context.logger.error("cannot record revocation of \(lease.id): \(error)")
                }
                leases.withLock { _ = $0.removeValue(forKey: lease.id) }
                Telemetry.ended(service: service.name, reason: .revoked)
            }
            await service.stop(actor: actor, reason: "shutdown")
            service.processes.removeCgroup()
            do { try service.semaphores.remove() } catch {
                context.logger.error("cannot remove semaphore set of \(service.name): \(error)")
            }
            service.lock.unlock()
        }
        try? context.cgroupRoot?.remove()
    }

    // MARK: Holder exits

    func watch(_ lease: Lease) throws(LifecycleError) {
        do {
            try context.watcher.watch(lease.holder) { [weak self] status in
                if lease.holderExited(status) { self?.handleUnexpectedExit(lease) }
            }
        } catch {
            try? lease.holder.signal(SIGKILL)
            throw .kernel("cannot watch holder: \(error)")
        }
    }

    /// Signals the holder and waits until it has given its reference back (its report) or
    /// exited; SIGKILL after 5 s. The watcher reaps it either way.
    @discardableResult
    func end(_ lease: Lease, signal: Int32) async -> ExitStatus? {
        releaseReports.expect(lease, timeoutMs: 5_000)
        defer { releaseReports.forget(lease) }
        try? lease.holder.signal(signal)
        return await lease.waitForHolderEnd()
    }

    /// A holder ended on its own (TTL, client exit, crash): record it, and stop the service
    /// if the kernel count is now 0.
    func handleUnexpectedExit(_ lease: Lease) {
        Task { [self] in
            guard let service = services.withLock({ $0[lease.service] }) else { return }
            await service.lock.lock()
            defer { service.lock.unlock() }
            guard lease.beginManaging() else { return }  // a release got there first
            lease.setPhase(.ended)
            let status = lease.recordedExit
            let reason = status == nil ? lease.inferredEnd() : LeaseEnd.from(holderExit: status)
            do {
                try await service.lockKernel()
                defer { service.unlockKernel() }
                let count = try service.kernelCount()
                try context.write { tx in
                    try tx.endLease(id: lease.id, reason: reason.rawValue)
                    try tx.append(NewEvent(reason.eventKind, service: service.name, lease: lease.id, pid: lease.holder.pid,
                                           detail: ["count": .int(Int64(count)), "holder_exit": .string(ExitStatus.describe(status))]))
                }
                leases.withLock { _ = $0.removeValue(forKey: lease.id) }
                Telemetry.ended(service: service.name, reason: reason)
                if count == 0 {
                    await service.lastReferenceGone(actor: EventActor.procrefd, reason: "last_\(reason.rawValue)")
                    await removeIfPending(service)
                }
            } catch {
                context.logger.error("handling exit of holder \(lease.holder.pid): \(error)")
            }
        }
    }
}
