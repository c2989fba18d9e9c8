import FoundationEssentials
import Glibc
import Posix
import Synchronization

/// Ends leases released by signal quickly and surely. A holder sent SIGTERM gives its
/// reference back itself and sends its pid on one datagram socket shared by all holders
/// (their descriptor 4), so the release is answered right after that semop, without waiting
/// for its exit. (A pooled holder is asked on its own socket and answers there: see
/// `LeaseIssuer.end`.) The socket is read on the I/O loop; a holder that neither reports nor
/// exits in time is killed by the one `Teardown`.
final class ReleaseReports: Sendable {
    /// Passed to pooled holders as their descriptor 4; never read here.
    private let writers: OwnedDescriptor
    private let reader: OwnedDescriptor
    var holderEnd: Int32 { writers.raw }
    private let loop: IOLoop
    private let expected = Mutex<[Int32: (lease: Lease, deadline: IOLoop.TimerID)]>([:])

    init(loop: IOLoop) throws(SystemCallError) {
        self.loop = loop
        let pair = try DatagramPair()
        reader = pair.reader
        writers = pair.writers
        try loop.watchReadable(reader.raw) { [weak self] in self?.readReports() }
    }

    /// Watches for `lease`'s holder to report its release; kills it after `timeoutMs`.
    /// Call before signalling it, so an early report is not missed.
    func expect(_ lease: Lease, timeoutMs: Int) {
        let loop = self.loop
        let deadline = loop.schedule(afterMs: timeoutMs) {
            // The lease keeps waiting: the exit watcher resumes it once the kill lands.
            Task { await Teardown(loop: loop).kill(lease.holder.identity) }
        }
        expected.withLock { $0[lease.holder.pid] = (lease, deadline) }
    }

    /// Stops watching (the holder reported, exited, or the wait is over).
    func forget(_ lease: Lease) {
        if let entry = expected.withLock({ $0.removeValue(forKey: lease.holder.pid) }) { loop.cancel(entry.deadline) }
    }

    /// Every report waiting on the socket (called on the loop's thread when it is readable).
    private func readReports() {
        while let message = Descriptor.receiveDatagram(reader.raw, timeoutMs: 0), !message.isEmpty {
            guard let pid = Int32(String(decoding: message.prefix { $0 != 10 }, as: UTF8.self)),
                let entry = expected.withLock({ $0.removeValue(forKey: pid) })
            else { continue }
            loop.cancel(entry.deadline)
            entry.lease.holderReportedRelease()
        }
    }
}
