import CPosixShims
import Glibc

/// The door's side of the control socket: messages from procrefd, reports to it, and the
/// rejoin when procrefd comes back.
extension DoorLoop {
    // MARK: procrefd

    mutating func readControl() {
        var buffer = [UInt8](repeating: 0, count: 512)
        while !procrefdAway {
            var passed: Int32 = -1
            let n = procref_door_receive(control, &buffer, buffer.count, &passed)
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                return procrefdLeft()
            }
            if n == 0 { return procrefdLeft() }
            let message = String(decoding: buffer[0..<n], as: UTF8.self)
            switch message {
            case _ where message.hasPrefix(PROCREF_DOOR_LISTEN + " ") && passed >= 0:
                guard !retiring else {
                    Glibc.close(passed)
                    continue
                }
                _ = procref_set_nonblocking(passed)
                listeners.append((passed, String(message.dropFirst(PROCREF_DOOR_LISTEN.utf8.count + 1))))
                _ = procref_door_epoll_set(epoll, passed, 1, 1, 0, UInt64(passed) << 2 | Self.listenerKind)
            case PROCREF_DOOR_RETIRE: retire()
            case PROCREF_DOOR_READY:
                ready = true
                needSent = false
                for id in pending.sorted() { connectUpstream(id) }
            case PROCREF_DOOR_FAILED, PROCREF_DOOR_STOPPED:
                ready = false
                needSent = false
                if message == PROCREF_DOOR_FAILED {
                    for id in pending { close(id) }
                }
            default:
                if passed >= 0 { Glibc.close(passed) }
            }
        }
    }

    /// procrefd is gone (it crashed, or handed off to the next one): the door serves on and
    /// waits for the next one at the rendezvous; without one, it retires.
    mutating func procrefdLeft() {
        _ = procref_epoll_remove(epoll, control)
        Glibc.close(control)
        control = -1
        needSent = false
        if rendezvous == nil { retire() }
    }

    /// Accepts nothing more and closes what waits; the loop ends with the last connection.
    mutating func retire() {
        retiring = true
        for listener in listeners {
            _ = procref_epoll_remove(epoll, listener.fd)
            Glibc.close(listener.fd)
        }
        listeners = []
        for id in pending { close(id) }
    }

    /// Tries the rendezvous when due. False when the semaphore set is gone: nobody can take
    /// the door back, and the references it holds count for nothing.
    mutating func rejoinIfDue() -> Bool {
        let now = procref_monotonic_ms()
        guard let rendezvous, now - lastRejoinAttempt >= Self.rejoinIntervalMs else { return true }
        lastRejoinAttempt = now
        if procref_door_set_gone(semid) == 1 { return false }
        let fd = procref_door_connect_messages(rendezvous)
        guard fd >= 0 else { return true }
        var uid: uid_t = 0, pid: pid_t = 0
        // Only procrefd's user (or root) may take the listening sockets.
        guard procref_door_peer(fd, &uid, &pid) == 0, uid == geteuid() || uid == 0,
            procref_door_epoll_set(epoll, fd, 1, 1, 0, Self.controlToken) == 0
        else {
            Glibc.close(fd)
            return true
        }
        control = fd
        send("\(PROCREF_DOOR_ADOPT) \(semid) \(service)")
        for listener in listeners {
            var message = Array("\(PROCREF_DOOR_LISTEN) \(listener.key)".utf8)
            _ = procref_send_with_fd(control, &message, message.count, listener.fd)
        }
        reported = (-1, 0, -1)
        report()
        if !pending.isEmpty { askForStart() }
        return true
    }

    func send(_ message: String) {
        guard control >= 0 else { return }  // procrefd is away: nobody to tell
        var bytes = Array(message.utf8)
        _ = procref_send_datagram(control, &bytes, bytes.count)
    }

    /// Something changed since the last report.
    var unreported: Bool {
        (connections.count, accepted, pending.count) != reported || bytes != reportedBytes
    }

    /// `count OPEN ACCEPTED PENDING UP DOWN`: at once when the open or the waiting
    /// connections go to or from none (what the service's machine acts on), otherwise at
    /// most every `reportIntervalMs` while something changed.
    mutating func report() {
        guard !procrefdAway, unreported else { return }
        let now = (open: connections.count, accepted: accepted, pending: pending.count)
        let clock = procref_monotonic_ms()
        let urgent = (now.open == 0) != (reported.open == 0) || (now.pending == 0) != (reported.pending == 0) || reported.open < 0
        guard urgent || clock - reportedAtMs >= Self.reportIntervalMs else { return }
        (reported, reportedBytes, reportedAtMs) = (now, bytes, clock)
        send("\(PROCREF_DOOR_COUNT) \(now.open) \(now.accepted) \(now.pending) \(bytes.up) \(bytes.down)")
    }

    mutating func askForStart() {
        guard !needSent, !procrefdAway else { return }
        needSent = true
        send(PROCREF_DOOR_NEED)
    }
}
