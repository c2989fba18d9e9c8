import AuditStore
import FoundationEssentials
import Logging
import Posix
import LifecycleModel

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
            if let holder, registry.existing(record.service) != nil {
                await readopt(record, holder: holder)
                report.leasesReadopted += 1
            } else {
                let end = LeaseEnd.inferred(expiresAt: record.expiresAt, clientPID: report.bootChanged ? nil : record.clientPID, now: now)
                let reason = report.bootChanged ? "reboot" : "ended while procrefd was down"
                await context.writeLogged { tx in
                    try tx.endLease(id: record.id, reason: end.rawValue)
                    try tx.append(NewEvent(end.eventKind, service: record.service, lease: record.id, pid: record.holderPID,
                                           detail: ["reason": .string(reason)]))
                }
                report.leasesEnded += 1
            }
        }
        for service in registry.all {
            if !report.bootChanged { report.orphanHoldersKilled += await killUnrecordedHolders(of: service) }
            await reconcileProcess(of: service, bootChanged: report.bootChanged, report: &report)
        }
        return report
    }

    private func readopt(_ record: LeaseRecord, holder: PidFD) async {
        let lease = Lease(info: LeaseInfo(record: record), holder: holder)
        leases.readopt(lease)
        await context.recordLogged(NewEvent(.leaseReadopted, service: record.service, lease: record.id, pid: record.holderPID))
        lease.setPhase(.active)
        do { try watch(lease) } catch { context.logger.error("cannot watch re-adopted holder \(record.holderPID): \(error)") }
        // It may have ended between the check and the watch: handled like any other exit.
    }

    /// Holders on this service's set that no live lease names: spawned by a procrefd that
    /// died before granting them. Their client never got a lease, so they are ended (and
    /// waited for: their SEM_UNDO applies at exit, and the count below must be settled).
    private func killUnrecordedHolders(of service: ServiceExecutor) async -> Int {
        let known = Set(leases.all.map(\.holder.pid))
        var killed = 0
        for pid in HolderScan.holders(onSemaphore: service.semaphores.id) where !known.contains(pid) {
            guard let identity = ProcessIdentity.of(pid: pid) else { continue }
            await Teardown(loop: context.loop).kill(identity)
            killed += 1
            context.logger.notice("killed unrecorded holder \(pid) of \(service.name)")
        }
        return killed
    }

    private func reconcileProcess(of service: ServiceExecutor, bootChanged: Bool, report: inout ReconcileReport) async {
        let stored = (try? context.store.read { try $0.serviceProcess(name: service.name) }) ?? nil
        var process: PidFD?
        if !bootChanged, let pid = stored?.pid, let start = stored?.startTime {
            process = try? PidFD(identity: ProcessIdentity(pid: pid, startTime: start))
        }
        let count = service.kernelCount()
        // Frozen by the procrefd before (idle = "freeze"): it runs again, and this machine
        // decides anew whether it idles.
        service.processes.cgroup?.setFrozen(false)
        if let process { service.adopt(process) }
        // Processes of the service the database does not name (a crash between a spawn and
        // its record) would hold its port and outlive every drain.
        await service.stopStrays(actor: Principal.procrefd, thorough: true)
        let name = service.name
        if let process {
            await context.recordLogged(NewEvent(.serviceAdopted, service: name, pid: process.pid, detail: count.value.map { ["count": .int(Int64($0))] } ?? [:]))
            report.servicesAdopted += 1
            if count.isZero {
                _ = await service.ask { .stopRequested(reason: "orphan", by: Principal.procrefd, $0) }
                report.servicesStopped += 1
            }
            return
        }
        if let state = stored?.state, state != ServiceState.stopped.rawValue {
            let reason = bootChanged ? "reboot" : "gone while procrefd was down"
            await context.writeLogged { tx in
                try tx.updateServiceProcess(name: name, state: "stopped", pid: nil, startTime: nil)
                try tx.append(NewEvent(.serviceStopped, service: name, pid: stored?.pid, detail: ["reason": .string(reason)]))
            }
        }
        guard count.mayBeHeld else { return }
        let answer = await service.ask { .startRequested($0, by: Principal.procrefd) }
        if case .refused(let refusal) = answer {
            context.logger.error("could not recover \(name): \(service.error(for: refusal))")
        } else if !service.definition.isLock {  // a lock has nothing to recover: it is ready again
            report.servicesRecovered += 1
        }
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
