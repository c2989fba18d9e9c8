import AuditStore
import FoundationEssentials
import Glibc
import Posix
import Synchronization
import Wire
import LifecycleModel

/// An acquire the Coordinator has validated and reserved, as the issuer takes it.
struct LeaseOrder: Sendable {
    /// The request, its owner and its client's pidfd set.
    let request: AcquireRequest
    let ttlMs: Int64?
    /// Who asked, for the records.
    let by: Principal
    let idempotency: IdempotencyKey?
}

/// The one place a lease is born: it launches the lease's holder (the kernel count +1),
/// makes the lease, queues its grant record, and gives the holder back when the grant
/// fails. The service's executor uses it for every acquire that goes through the machine;
/// the fast path (`FastPath.swift`) for an acquire on a ready service.
final class LeaseIssuer: Sendable {
    let context: LifecycleContext
    let holders: HolderPool
    let releaseReports: ReleaseReports

    init(context: LifecycleContext, holders: HolderPool, releaseReports: ReleaseReports) {
        self.context = context
        self.holders = holders
        self.releaseReports = releaseReports
    }

    // MARK: Launching

    /// Hands the order to an idle holder on the calling thread (see `HolderPool.launchNow`).
    func launchNow(_ order: LeaseOrder, on service: ServiceExecutor) -> HolderPool.LaunchNow {
        let request = order.request
        return holders.launchNow(
            semaphoreID: service.semaphores.id, ttlMs: order.ttlMs, clientPID: request.clientPID, clientFD: request.client?.fd)
    }

    /// A holder holding its reference, watched, as the order's lease (still `managed`).
    func issue(_ order: LeaseOrder, on service: ServiceExecutor) async throws(LifecycleError) -> Lease {
        let pooled: HolderProcess
        do throws(HolderPool.Failure) {
            // An idle holder answers within microseconds: asked on this thread, without a hop
            // to the I/O loop and back.
            switch launchNow(order, on: service) {
            case .launched(let holder): pooled = holder
            case .answerPending(let answer): pooled = try await answer()
            case .failed(let failure): throw failure
            case .noIdleHolder:
                let request = order.request
                pooled = try await holders.launch(
                    semaphoreID: service.semaphores.id, ttlMs: order.ttlMs, clientPID: request.clientPID, clientFD: request.client?.fd)
            }
        } catch {
            switch error {
            case .clientGone: throw .clientNotRunning(order.request.clientPID ?? 0)
            case .other(let message): throw .holder(message)
            }
        }
        return lease(on: pooled, of: service, order)
    }

    /// The lease a launched holder holds (still `managed`).
    func lease(on pooled: HolderProcess, of service: ServiceExecutor, _ order: LeaseOrder) -> Lease {
        let (request, now) = (order.request, Date())
        let info = LeaseInfo(
            id: Self.newLeaseID(), service: service.name, holder: request.holder, holderPID: pooled.process.pid,
            clientPID: request.clientPID, ttlMs: order.ttlMs, acquiredAt: Timestamp.format(now),
            expiresAt: order.ttlMs.map { Timestamp.format(now.addingTimeInterval(Double($0) / 1000)) }, owner: request.owner)
        let lease = Lease(info: info, holder: pooled.process, pooled: pooled)
        pooled.attach(lease)
        return lease
    }

    // MARK: Recording

    /// Queues the lease's row, `lease.acquired` and the idempotency record as one write.
    func recordGrant(_ lease: Lease, count: KernelCount, started: Bool, waitedMs: Int?, _ order: LeaseOrder) -> PendingWrite<Void> {
        let (info, holder, actor, idempotency) = (lease.info, lease.holder, order.by, order.idempotency)
        let idempotencyWindowMs = context.settings.current.idempotencyWindowMs
        let now = Date()
        return context.submit { tx in
            var record = LeaseRecord(
                id: info.id, service: info.service, holder: info.holder, holderPID: holder.pid,
                holderStartTime: holder.identity.startTime, clientPID: info.clientPID, ttlMs: info.ttlMs,
                acquiredAt: info.acquiredAt, expiresAt: info.expiresAt)
            record.owner = info.owner
            try tx.insertLease(record)
            var detail: [String: DetailValue] = ["started": .bool(started)]
            if let count = count.value { detail["count"] = .int(Int64(count)) }
            if let ttlMs = info.ttlMs { detail["ttl_ms"] = .int(ttlMs) }
            if let client = info.clientPID { detail["client_pid"] = .int(Int64(client)) }
            if !info.holder.isEmpty { detail["holder"] = .string(info.holder) }
            if let waitedMs { detail["waited_ms"] = .int(Int64(waitedMs)) }
            try tx.append(NewEvent(.leaseAcquired, service: info.service, lease: info.id, pid: holder.pid, actor: actor, detail: detail))
            if let idempotency {
                try tx.expireIdempotencyKeys(before: now.addingTimeInterval(-Double(idempotencyWindowMs) / 1000))
                try tx.saveIdempotencyKey(IdempotencyRecord(
                    key: idempotency.key, service: info.service, requestHash: idempotency.requestHash, lease: info.id,
                    count: count.value, started: started))
            }
        }
    }

    // MARK: Giving back

    /// Ends the holder of a lease that was not granted; a service nobody counts any more is
    /// stopped (or lingers).
    func undo(_ lease: Lease, of service: ServiceExecutor, by actor: Principal) async {
        await end(lease)
        service.slotFreed()
        if service.kernelCount().isZero { service.send(.lastReferenceGone(reason: "acquire_failed", by: actor, nil)) }
    }

    /// Asks the holder to give its reference back and waits until it has (its answer) or
    /// exited; one that does neither within 5 s is killed. A pooled holder is asked on its
    /// socket and then goes back to the pool; any other gets SIGTERM (see `ReleaseReports`).
    @discardableResult
    func end(_ lease: Lease) async -> ExitStatus? {
        guard let pooled = lease.pooled, let socket = pooled.beginExchange(HolderProtocol.releaseLine) else {
            return await endBySignal(lease)
        }
        let answer = await context.loop.readLine(socket, timeoutMs: Self.releaseTimeoutMs)
        return await concludeEnd(lease, pooled, answer: answer)
    }

    /// How long a holder may take to give its reference back before it is killed.
    static let releaseTimeoutMs = 5_000

    /// The holder's answer to `release`: `released` sends it back to the pool; anything else
    /// (it ended, or said nothing in time) ends it, and its exit is awaited.
    func concludeEnd(_ lease: Lease, _ pooled: HolderProcess, answer: String?) async -> ExitStatus? {
        if answer.map(HolderProtocol.Reply.init) == .released { return returnToPool(lease, pooled) }
        pooled.endExchange()
        if !lease.exitedAlready { await Teardown(loop: context.loop).kill(lease.holder.identity) }
        return await lease.waitForHolderEnd()
    }

    /// A holder that answered `released` holds nothing: the lease's waiters go on, as after
    /// an exit 0, and the holder goes back to the pool.
    func returnToPool(_ lease: Lease, _ pooled: HolderProcess) -> ExitStatus {
        pooled.endExchange()
        lease.holderReportedRelease()
        holders.recycle(pooled)
        return .exited(code: 0)
    }

    /// Ends a holder with SIGTERM: it reports on the shared datagram socket, or exits.
    private func endBySignal(_ lease: Lease) async -> ExitStatus? {
        releaseReports.expect(lease, timeoutMs: Self.releaseTimeoutMs)
        try? lease.holder.signal(SIGTERM)
        let status = await lease.waitForHolderEnd()
        releaseReports.forget(lease)
        return status
    }

    // MARK: Ids

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

/// The stamp of the newest lease id (see `LeaseIssuer.newLeaseID`).
private let lastLeaseStamp = Atomic<UInt64>(0)

private let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
