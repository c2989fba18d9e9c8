import CPosixShims

/// The procref-holder protocol as procrefd speaks it: the texts and exit codes of
/// `procref_holder_protocol.h`, which the holder includes too, and the one parser of a
/// holder's replies.
public enum HolderProtocol {
    /// argv[1] of an idle pooled holder.
    public static let poolFlag = String(cString: procref_holder_pool_flag)
    /// The release request, with its newline.
    public static let releaseLine = Array((String(cString: procref_holder_release) + "\n").utf8)
    /// A pooled holder's command: `SEMID TTL_MS CLIENT_PID` (0: none), with its newline.
    public static func command(semaphoreID: Int32, ttlMs: Int64?, clientPID: Int32?) -> [UInt8] {
        Array("\(semaphoreID) \(ttlMs ?? 0) \(clientPID ?? 0)\n".utf8)
    }

    /// A line a holder wrote (without its newline).
    public enum Reply: Equatable, Sendable {
        /// Its +1 | SEM_UNDO is in.
        case acquired
        /// It gave its reference back (the answer to `release`).
        case released
        /// It failed `what` with `errno` and exits.
        case error(what: String, errno: Int32)
        /// Anything else: a broken holder.
        case unexpected(String)

        public init(_ line: String) {
            if line == Self.acquiredText { self = .acquired; return }
            if line == Self.releasedText { self = .released; return }
            let words = line.split(separator: " ")
            if words.count == 3, words[0] == Self.errorText, let errno = Int32(words[2]) {
                self = .error(what: String(words[1]), errno: errno)
            } else {
                self = .unexpected(line)
            }
        }

        private static let acquiredText = String(cString: procref_holder_acquired)
        private static let releasedText = String(cString: procref_holder_released)
        private static let errorText = Substring(String(cString: procref_holder_error))
    }

    /// Exit codes (`PROCREF_HOLDER_EXIT_*`).
    public static let exitReleased = PROCREF_HOLDER_EXIT_RELEASED
    public static let exitExpired = PROCREF_HOLDER_EXIT_EXPIRED
    public static let exitClientExited = PROCREF_HOLDER_EXIT_CLIENT_EXITED
    /// The keepalive signal: the holder's deadline moves to now + TTL.
    public static let keepaliveSignal = PROCREF_HOLDER_KEEPALIVE_SIGNAL
}
