import CPosixShims
import Glibc

/// The signals a wrapper passes on to the command it runs (TERM, INT, HUP, QUIT, USR1,
/// USR2): caught by a handler in whichever thread the kernel picks, and queued on a pipe
/// (`fd`) for the wrapper's loop. Blocking them instead would have to happen in every
/// thread, before any starts.
public final class ForwardedSignals {
    public let fd: Int32

    public init() throws(SystemCallError) {
        fd = try check("sigaction", procref_forwarding_pipe())
    }

    /// The next pending signal (call once `fd` is readable), and whether the kernel sent it
    /// (a terminal's ^C, which already reached the whole foreground process group).
    public func next() -> (signal: Int32, fromKernel: Bool)? {
        var fromKernel: Int32 = 0
        let signal = procref_forwarding_read(fd, &fromKernel)
        return signal > 0 ? (signal, fromKernel != 0) : nil
    }

    deinit { Descriptor.close(fd) }
}

extension Descriptor {
    /// Waits up to `timeoutMs` (-1: without limit) until `first` or `second` is readable
    /// (or hung up); says which.
    public static func waitReadable(_ first: Int32, _ second: Int32, timeoutMs: Int) -> (first: Bool, second: Bool) {
        var a: Int32 = 0, b: Int32 = 0
        while procref_poll2(first, second, Int32(clamping: timeoutMs), &a, &b) < 0 && errno == EINTR {}
        return (a != 0, b != 0)
    }
}
