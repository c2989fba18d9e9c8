import Foundation
import Glibc
import Posix
import Synchronization

/// Ends holders quickly and surely. A holder asked to end (SIGTERM) gives its reference back
/// itself and sends its pid on one datagram socket shared by all holders (their descriptor
/// 4), so a release is answered right after that semop instead of after the holder's exit
/// (the exit watcher reaps it later). One thread reads the reports and also enforces the
/// deadline of every holder asked to end: past it, SIGKILL (the kernel then undoes it).
final class ReleaseReports: Sendable {
    /// Passed to pooled holders as their descriptor 4; never read here.
    let holderEnd: Int32
    private let readEnd: Int32
    private struct Expected {
        let lease: Lease
        let deadline: Int64
    }
    private let expected = Mutex<[Int32: Expected]>([:])
    /// How often overdue holders are looked for.
    private static let sweepIntervalMs = 50

    init() throws(SystemCallError) {
        let pair = try DatagramPair()
        readEnd = pair.first
        holderEnd = pair.second
        let thread = Thread { [self] in self.run() }
        thread.name = "procrefd-release-reports"
        thread.start()
    }

    /// Watches for `lease`'s holder to report its release; SIGKILLs it after `timeoutMs`.
    /// Call before signalling it, so an early report is not missed.
    func expect(_ lease: Lease, timeoutMs: Int) {
        expected.withLock { $0[lease.holder.pid] = Expected(lease: lease, deadline: monotonicMilliseconds() + Int64(timeoutMs)) }
    }

    /// Stops watching (the holder reported, exited, or the wait is over).
    func forget(_ lease: Lease) {
        _ = expected.withLock { $0.removeValue(forKey: lease.holder.pid) }
    }

    private func run() {
        var nextSweep = monotonicMilliseconds() + Int64(Self.sweepIntervalMs)
        while true {
            if let message = Descriptor.receiveDatagram(readEnd, timeoutMs: Self.sweepIntervalMs), !message.isEmpty,
               let pid = Int32(String(decoding: message.prefix { $0 != 10 }, as: UTF8.self)),
               let entry = expected.withLock({ $0.removeValue(forKey: pid) }) {
                entry.lease.holderReportedRelease()
            }
            let now = monotonicMilliseconds()
            guard now >= nextSweep else { continue }
            nextSweep = now + Int64(Self.sweepIntervalMs)
            let overdue = expected.withLock { table in table.values.filter { $0.deadline <= now } }
            for entry in overdue {
                // Keep the entry's lease waiting: the exit watcher resumes it once the kill lands.
                try? entry.lease.holder.signal(SIGKILL)
            }
        }
    }
}
