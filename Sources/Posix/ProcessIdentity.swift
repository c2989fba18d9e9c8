import Glibc

/// A process as the kernel knows it: pid plus start time (`/proc/PID/stat` field 22, clock
/// ticks since boot). Two processes never share both, so a recycled pid is never mistaken
/// for the one we started.
public struct ProcessIdentity: Hashable, Sendable, Codable, CustomStringConvertible {
    public let pid: Int32
    public let startTime: UInt64

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// Reads the identity of a live process, or nil if there is no such pid.
    public static func of(pid: Int32) -> ProcessIdentity? {
        guard let stat = ProcessStat.read(pid: pid) else { return nil }
        return ProcessIdentity(pid: pid, startTime: stat.startTime)
    }

    /// True while this very process exists and is not a zombie.
    public var isAlive: Bool {
        guard let stat = ProcessStat.read(pid: pid) else { return false }
        return stat.startTime == startTime && stat.state != "Z" && stat.state != "X"
    }

    public var description: String { "pid \(pid) (start \(startTime))" }
}

/// The two fields of `/proc/PID/stat` procrefd needs.
public struct ProcessStat: Sendable, Equatable {
    /// One-letter state: R, S, D, Z (zombie), T, X, ...
    public let state: Character
    public let startTime: UInt64
    public let processGroup: Int32

    public static func read(pid: Int32) -> ProcessStat? {
        guard pid > 0, let text = readSmallFile("/proc/\(pid)/stat") else { return nil }
        return parse(text)
    }

    /// Parses the stat line. The command name (field 2) may hold spaces and parentheses, so
    /// fields are counted from the last ')'.
    public static func parse(_ line: String) -> ProcessStat? {
        guard let close = line.lastIndex(of: ")") else { return nil }
        let fields = line[line.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); field N is fields[N - 3].
        guard fields.count >= 20, let state = fields[0].first,
            let group = Int32(fields[2]), let start = UInt64(fields[19])
        else { return nil }
        return ProcessStat(state: state, startTime: start, processGroup: group)
    }
}

/// Reads a small file (procfs, PID file) in one go; nil when it cannot be opened.
public func readSmallFile(_ path: String, limit: Int = 64 * 1024) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}
