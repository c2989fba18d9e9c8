import FoundationEssentials
import Glibc
import Logging
import Posix
import Synchronization

/// procrefd's log lines on standard error, in the form journald understands when it holds
/// that stream: each line begins with its syslog priority (`<3>` error, `<4>` warning,
/// `<6>` info …), so `journalctl -p warning -u procrefd` filters them. systemd says so with
/// `JOURNAL_STREAM=DEVICE:INODE`, which must name standard error itself (a redirection made
/// after systemd started procrefd leaves the variable behind).
struct JournalLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    /// One writer at a time: a record's lines stay together.
    private static let lock = Mutex(())

    init(label: String) { self.label = label }

    /// Whether standard error is the journal's stream.
    static func standardErrorIsJournal(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// The syslog priority of a level (sd-daemon's `SD_ERR`, `SD_WARNING`, …).
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        // journald adds its own timestamp; the priority prefix goes on every line of a message.
        let text = "\(label): [\(event.source)]\(fields) \(event.message)"
        let prefix = "<\(Self.priority(event.level))>"
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { prefix + $0 }.joined(separator: "\n") + "\n"
        Self.lock.withLock { _ in _ = Descriptor.writeAll(STDERR_FILENO, Array(lines.utf8)) }
    }
}
