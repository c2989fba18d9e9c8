import CPosixShims

/// procref-holder: holds one lease at a time as one kernel reference.
///
/// Usage: `procref-holder SEMID TTL_MS CLIENT_PID` with descriptor 3 a pipe to procrefd, or
/// `procref-holder --pool PADDING` with descriptor 3 a socket: an idle holder that waits for
/// one line `SEMID TTL_MS CLIENT_PID` (and exits quietly on end of file, when procrefd is
/// gone), with the client's pidfd passed alongside (SCM_RIGHTS) when there is a client, then
/// shows those in its command line (PADDING makes room) and holds that lease.
/// It adds `+1 | SEM_UNDO` to semaphore 0 of SEMID, writes `acquired\n` on descriptor 3,
/// then waits. Whatever way it exits, the kernel undoes the +1.
///
/// On a release it gives its reference back itself (`-1 | SEM_UNDO`, which also clears its
/// undo entry), so procrefd can answer the release without waiting for an exit. A release is
/// the line `release` on its socket, answered `released` there: a pooled holder then shows
/// `--pool` again and waits for its next lease (it holds nothing meanwhile); procrefd
/// retires it by closing the socket. A release by signal (SIGTERM/SIGINT/SIGHUP, from anyone)
/// ends the process, so whoever sent it sees the lease end with the exit; when descriptor 4
/// is procrefd's datagram socket, the holder first sends its pid there. The socket closing
/// while a lease is held (procrefd gone) changes nothing: the lease stays held.
///
/// The lines, the keepalive signal and the exit codes are those of
/// `procref_holder_protocol.h`, which procrefd reads too.
@main
struct Holder {
    static let reportFD: Int32 = 3
    /// procrefd's release-report datagram socket, when it passed one.
    static let releaseReportFD: Int32 = 4

    static func main() {
        // Block control signals first: a release that races start-up is read later, not lost.
        let signalFD = procref_signalfd_for_control_signals()
        guard signalFD >= 0 else { fail("signalfd", code: PROCREF_HOLDER_EXIT_USAGE) }
        var semid: Int64 = 0, ttlMs: Int64 = 0, clientPid: Int64 = 0
        if procref_argc() == 3, let mode = procref_argv(1), mode.pointee == 45 /* "-" */ {
            while true {
                let clientFD = waitForCommand(signalFD: signalFD, &semid, &ttlMs, &clientPid)
                hold(semid: semid, ttlMs: ttlMs, clientPid: clientPid, signalFD: signalFD, clientFD: clientFD)
            }
        }
        guard procref_argc() == 4, let s = argument(1), let t = argument(2), let c = argument(3) else { fail("usage", code: PROCREF_HOLDER_EXIT_USAGE) }
        hold(semid: s, ttlMs: t, clientPid: c, signalFD: signalFD)
        procref_exit(PROCREF_HOLDER_EXIT_RELEASED)
    }

    /// Holds one lease until it is released (then returns, the reference given back), or
    /// ends with it (TTL, client exit: the process exits and the kernel undoes the +1).
    /// `clientFD`: the client's pidfd as procrefd sent it (procrefd opened it when it checked
    /// the client, so no other process can have taken the pid since); -1 to open it here.
    static func hold(semid: Int64, ttlMs: Int64, clientPid: Int64, signalFD: Int32, clientFD passed: Int32 = -1) {
        guard semid >= 0, ttlMs >= 0, clientPid >= 0 else { fail("usage", code: PROCREF_HOLDER_EXIT_USAGE) }
        var clientFD: Int32 = passed
        if clientPid > 0 && clientFD < 0 {
            clientFD = procref_pidfd_open(Int32(clientPid))
            if clientFD < 0 { fail("client", code: PROCREF_HOLDER_EXIT_CLIENT_UNUSABLE) }
        }
        if procref_semop2(Int32(semid), 0, 1, Int16(procref_sem_undo_flag()), 1, 0, 0, 0) != 0 {
            fail("semop", code: PROCREF_HOLDER_EXIT_SEMOP_FAILED)
        }
        report(procref_holder_acquired)

        var commandFD: Int32 = reportFD
        var deadline: Int64 = ttlMs > 0 ? procref_monotonic_ms() + ttlMs : -1
        while true {
            var timeout: Int32 = -1
            if deadline >= 0 {
                let left = deadline - procref_monotonic_ms()
                if left <= 0 { procref_exit(PROCREF_HOLDER_EXIT_EXPIRED) }
                timeout = Int32(min(left, Int64(Int32.max)))
            }
            var signalReady: Int32 = 0, clientReady: Int32 = 0, commandReady: Int32 = 0
            let rc = procref_poll3(signalFD, clientFD, commandFD, timeout, &signalReady, &clientReady, &commandReady)
            if rc < 0 { continue }  // EINTR
            if clientReady != 0 { procref_exit(PROCREF_HOLDER_EXIT_CLIENT_EXITED) }
            if signalReady != 0 {
                let signo = procref_signalfd_read(signalFD)
                if signo == PROCREF_HOLDER_KEEPALIVE_SIGNAL {
                    if ttlMs > 0 { deadline = procref_monotonic_ms() + ttlMs }
                } else if signo > 0 {
                    release(semid: Int32(semid))
                    procref_exit(PROCREF_HOLDER_EXIT_RELEASED)
                }
            }
            if commandReady != 0 {
                // procrefd sends nothing but `release\n` while a lease is held, in one write.
                var line = [UInt8](repeating: 0, count: 16)
                let n = line.withUnsafeMutableBufferPointer { procref_read(commandFD, $0.baseAddress, $0.count) }
                if n <= 0 {
                    commandFD = -1  // procrefd is gone: hold on, for the next one to re-adopt
                } else if line.withUnsafeBufferPointer({ procref_holder_is_release($0.baseAddress, n) }) != 0 {
                    showIdle()  // before the answer: once procrefd hears it, the holder is idle
                    giveBack(semid: Int32(semid))
                    report(procref_holder_released)  // on the socket procrefd asked on: it reads the answer there
                    if clientFD >= 0 { _ = procref_close(clientFD) }
                    return
                }
            }
        }
    }

    /// Gives the reference back. A count someone else zeroed must not block (IPC_NOWAIT);
    /// then the holder exits, since its undo entry is not clean.
    static func giveBack(semid: Int32) {
        let flags = Int16(procref_sem_undo_flag()) | Int16(procref_ipc_nowait_flag())
        guard procref_semop2(semid, 0, -1, flags, 1, 0, 0, 0) == 0 else { procref_exit(PROCREF_HOLDER_EXIT_RELEASED) }
    }

    /// A release by signal: gives the reference back and tells procrefd on its datagram
    /// socket (best effort: the exit that follows gives it back anyway, and procrefd also
    /// watches for exits).
    static func release(semid: Int32) {
        giveBack(semid: semid)
        var message = decimal(Int64(procref_getpid()))
        message.append(10)
        message.withUnsafeBufferPointer { _ = procref_send_datagram(releaseReportFD, $0.baseAddress, $0.count) }
    }

    /// Pool mode: waits for `SEMID TTL CLIENT` on descriptor 3. A control signal or the end of
    /// the stream (procrefd gone, or retiring it) ends the idle holder, which holds nothing.
    /// Returns the client's pidfd when procrefd sent one with the line (else -1).
    static func waitForCommand(signalFD: Int32, _ semid: inout Int64, _ ttlMs: inout Int64, _ clientPid: inout Int64) -> Int32 {
        while true {
            var signalReady: Int32 = 0
            var commandReady: Int32 = 0
            if procref_poll2(signalFD, reportFD, -1, &signalReady, &commandReady) < 0 { continue }
            if signalReady != 0 { procref_exit(PROCREF_HOLDER_EXIT_RELEASED) }
            if commandReady != 0 { break }
        }
        var clientFD: Int32 = -1
        switch procref_read_three_ints_fd(reportFD, &semid, &ttlMs, &clientPid, &clientFD) {
        case 0: break
        case 1: procref_exit(PROCREF_HOLDER_EXIT_RELEASED)
        default: fail("command", code: PROCREF_HOLDER_EXIT_USAGE)
        }
        var text: [UInt8] = []
        for value in [semid, ttlMs, clientPid] {
            if !text.isEmpty { text.append(32) }
            text += decimal(value)
        }
        text.append(0)
        text.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { procref_set_arguments($0) }
        }
        return clientFD
    }

    /// Shows `--pool` as the command line again: the holder holds nothing now.
    static func showIdle() { procref_set_arguments(procref_holder_pool_flag) }

    static func decimal(_ number: Int64) -> [UInt8] {
        var digits: [UInt8] = []
        var value = number < 0 ? -number : number
        repeat {
            digits.append(UInt8(48 + value % 10))
            value /= 10
        } while value > 0
        if number < 0 { digits.append(45) }
        return digits.reversed()
    }

    static func argument(_ index: Int32) -> Int64? {
        guard let raw = procref_argv(Int32(index)) else { return nil }
        var ok: Int32 = 0
        let value = procref_parse_int(raw, &ok)
        return ok != 0 ? value : nil
    }

    /// Writes `error WHAT ERRNO` to procrefd and exits with `code`.
    static func fail(_ what: StaticString, code: Int32) -> Never {
        let err = procref_errno()
        what.utf8Start.withMemoryRebound(to: CChar.self, capacity: what.utf8CodeUnitCount + 1) {
            _ = procref_holder_write_error(reportFD, $0, err)
        }
        procref_exit(code)
    }

    /// Writes one line of the protocol to procrefd.
    static func report(_ line: UnsafePointer<CChar>) { _ = procref_holder_write_line(reportFD, line) }
}
