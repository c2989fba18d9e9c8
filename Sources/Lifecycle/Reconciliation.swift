import AuditStore
import Foundation
import Posix

/// What start-up reconciliation found and did.
public struct ReconcileReport: Sendable, Equatable {
    public var bootChanged = false
    public var leasesReadopted = 0
    public var leasesEnded = 0
    public var orphanHoldersKilled = 0
    public var servicesAdopted = 0
    public var servicesRecovered = 0
    public var servicesStopped = 0

    public init() {}
}

extension Coordinator {
    /// Makes procrefd's tables agree with the kernel and the real processes, before serving.
    ///
    /// Recorded live leases whose holder still runs (same pid and start time) are watched
    /// again (`lease.readopted`); the others end as expired, client_exited or lost. Holders
    /// no lease names (never granted) are killed. Then each service's kernel count decides:
    /// count > 0 and process alive → adopt; count > 0 and dead → start again; count 0 and
    /// alive → stop (reason `orphan`). Processes of a service that no record names are
    /// stopped (reason `stray`). A changed boot id means every recorded process is gone.
    public func reconcile(previousBootID: String?, bootID: String) async -> ReconcileReport {
        var report = ReconcileReport()
        report.bootChanged = previousBootID != nil && previousBootID != bootID
        let records = (try? context.store.read { try $0.liveLeases() }) ?? []
        let now = Date()
        for record in records {
            let identity = ProcessIdentity(pid: record.holderPID, startTime: record.holderStartTime)
            let holder = report.bootChanged ? nil : try? PidFD(identity: identity)
            if let holder, services.withLock({ $0[record.service] }) != nil {
                readopt(record, holder: holder)
                report.leasesReadopted += 1
            } else {
                let end = LeaseEnd.inferred(expiresAt: record.expiresAt, clientPID: report.bootChanged ? nil : record.clientPID, now: now)
                recordLogged(record.service) { tx in
                    try tx.endLease(id: record.id, reason: end.rawValue)
                    try tx.append(NewEvent(end.eventKind, service: record.service, lease: record.id, pid: record.holderPID,
                                           detail: ["reason": .string(report.bootChanged ? "reboot" : "ended while procrefd was down")]))
                }
                report.leasesEnded += 1
            }
        }
        for service in services.withLock({ Array($0.values) }) {
            await service.lock.lock()
            defer { service.lock.unlock() }
            if !report.bootChanged { report.orphanHoldersKilled += killUnrecordedHolders(of: service) }
            await reconcileProcess(of: service, bootChanged: report.bootChanged, report: &report)
        }
        return report
    }

    private func readopt(_ record: LeaseRecord, holder: PidFD) {
        let info = LeaseInfo(
            id: record.id, service: record.service, holder: record.holder, holderPID: record.holderPID,
            clientPID: record.clientPID, ttlMs: record.ttlMs, acquiredAt: record.acquiredAt, expiresAt: record.expiresAt)
        let lease = Lease(info: info, holder: holder)
        leases.withLock { $0[record.id] = lease }
        recordLogged(record.service) { tx in
            try tx.append(NewEvent(.leaseReadopted, service: record.service, lease: record.id, pid: record.holderPID))
        }
        lease.setPhase(.active)
        do { try watch(lease) } catch { context.logger.error("cannot watch re-adopted holder \(record.holderPID): \(error)") }
        // It may have ended between the check and the watch: handled like any other exit.
    }

    /// Holders on this service's set that no live lease names: spawned by a procrefd that
    /// died before granting them. Their client never got a lease, so they are ended.
    private func killUnrecordedHolders(of service: ManagedService) -> Int {
        let known = Set(leases.withLock { $0.values.map(\.holder.pid) })
        var killed = 0
        for pid in HolderScan.holders(onSemaphore: service.semaphores.id) where !known.contains(pid) {
            guard let identity = ProcessIdentity.of(pid: pid), let process = try? PidFD(identity: identity) else { continue }
            try? process.signal(SIGKILL)
            killed += 1
            context.logger.notice("killed unrecorded holder \(pid) of \(service.name)")
        }
        // Their SEM_UNDO applies at exit; wait briefly so the count below is settled.
        let deadline = monotonicMilliseconds() + 2_000
        while killed > 0, monotonicMilliseconds() < deadline,
            HolderScan.holders(onSemaphore: service.semaphores.id).contains(where: { !known.contains($0) }) {
            usleep(2_000)
        }
        return killed
    }

    private func reconcileProcess(of service: ManagedService, bootChanged: Bool, report: inout ReconcileReport) async {
        let stored = (try? context.store.read { try $0.serviceProcess(name: service.name) }) ?? nil
        var process: PidFD?
        if !bootChanged, let pid = stored?.pid, let start = stored?.startTime {
            process = try? PidFD(identity: ProcessIdentity(pid: pid, startTime: start))
        }
        let count = (try? service.kernelCount()) ?? 0
        if let process { service.adopt(process) }
        // Processes of the service the database does not name (a crash between a spawn and
        // its record) would hold its port and outlive every drain.
        await service.stopStrays(actor: EventActor.procrefd, thorough: true)
        if let process {
            recordLogged(service.name) { tx in
                try tx.append(NewEvent(.serviceAdopted, service: service.name, pid: process.pid, detail: ["count": .int(Int64(count))]))
            }
            report.servicesAdopted += 1
            if count == 0 {
                await service.stop(actor: EventActor.procrefd, reason: "orphan")
                report.servicesStopped += 1
            }
        } else {
            if let state = stored?.state, state != ServiceState.stopped.rawValue {
                recordLogged(service.name) { tx in
                    try tx.updateServiceProcess(name: service.name, state: "stopped", pid: nil, startTime: nil)
                    try tx.append(NewEvent(.serviceStopped, service: service.name, pid: stored?.pid,
                                           detail: ["reason": .string(bootChanged ? "reboot" : "gone while procrefd was down")]))
                }
            }
            if count > 0 {
                do {
                    try await service.start(actor: EventActor.procrefd, count: count)
                    report.servicesRecovered += 1
                } catch {
                    context.logger.error("could not recover \(service.name): \(error)")
                }
            }
        }
    }

    private func recordLogged(_ service: String, _ body: (StoreTransaction) throws -> Void) {
        do { try context.write(body) } catch { context.logger.error("reconciling \(service): \(error)") }
    }
}

/// Finds procref-holder processes by their command line (`procref-holder SEMID TTL CLIENT`).
enum HolderScan {
    static func holders(onSemaphore semid: Int32) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap(Int32.init).filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let argv = data.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            return argv.count >= 2 && argv[0].hasSuffix("procref-holder") && argv[1] == String(semid)
                && ProcessStat.read(pid: pid).map { $0.state != "Z" } == true
        }
    }
}
