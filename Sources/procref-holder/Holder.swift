import CPosixShims

/// procref-holder: holds one lease as one kernel reference.
///
/// Usage: `procref-holder SEMID TTL_MS CLIENT_PID` with descriptor 3 a pipe to procrefd.
/// It adds `+1 | SEM_UNDO` to semaphore 0 of SEMID, writes `acquired\n` on descriptor 3,
/// then waits. Whatever way it exits, the kernel undoes the +1.
///
/// Exit codes (read by procrefd through waitid): 0 released (SIGTERM/SIGINT/SIGHUP),
/// 3 TTL expired, 4 the watched client exited, 2 usage, 10 client pid unusable,
/// 11 semop failed. SIGUSR1 is a keepalive: the deadline moves to now + TTL.
@main
struct Holder {
    static let reportFD: Int32 = 3

    static func main() {
        // Block control signals first: a release that races start-up is read later, not lost.
        let signalFD = procref_signalfd_for_control_signals()
        guard signalFD >= 0, procref_argc() == 4,
            let semid = argument(1), let ttlMs = argument(2), let clientPid = argument(3),
            semid >= 0, ttlMs >= 0, clientPid >= 0
        else { fail("usage", code: 2) }

        var clientFD: Int32 = -1
        if clientPid > 0 {
            clientFD = procref_pidfd_open(Int32(clientPid))
            if clientFD < 0 { fail("client", code: 10) }
        }
        if procref_semop2(Int32(semid), 0, 1, Int16(procref_sem_undo_flag()), 1, 0, 0, 0) != 0 {
            fail("semop", code: 11)
        }
        report("acquired\n")
        _ = procref_close(reportFD)

        var deadline: Int64 = ttlMs > 0 ? procref_monotonic_ms() + ttlMs : -1
        while true {
            var timeout: Int32 = -1
            if deadline >= 0 {
                let left = deadline - procref_monotonic_ms()
                if left <= 0 { procref_exit(3) }
                timeout = Int32(min(left, Int64(Int32.max)))
            }
            var signalReady: Int32 = 0
            var clientReady: Int32 = 0
            let rc = procref_poll2(signalFD, clientFD, timeout, &signalReady, &clientReady)
            if rc < 0 { continue }  // EINTR
            if clientReady != 0 { procref_exit(4) }
            if signalReady != 0 {
                let signo = procref_signalfd_read(signalFD)
                if signo == 10 /* SIGUSR1 */ {
                    if ttlMs > 0 { deadline = procref_monotonic_ms() + ttlMs }
                } else if signo > 0 {
                    procref_exit(0)
                }
            }
        }
    }

    static func argument(_ index: Int32) -> Int64? {
        guard let raw = procref_argv(Int32(index)) else { return nil }
        var ok: Int32 = 0
        let value = procref_parse_int(raw, &ok)
        return ok != 0 ? value : nil
    }

    /// Writes `error WHAT ERRNO\n` to procrefd and exits with `code`.
    static func fail(_ what: StaticString, code: Int32) -> Never {
        let err = procref_errno()
        report("error ")
        report(what)
        report(" ")
        var digits: [UInt8] = []
        var value = err < 0 ? -err : err
        repeat {
            digits.append(UInt8(48 + value % 10))
            value /= 10
        } while value > 0
        digits.reverse()
        digits.append(10)
        digits.withUnsafeBufferPointer { _ = procref_write(reportFD, $0.baseAddress, $0.count) }
        procref_exit(code)
    }

    static func report(_ text: StaticString) {
        _ = procref_write(reportFD, text.utf8Start, text.utf8CodeUnitCount)
    }
}
