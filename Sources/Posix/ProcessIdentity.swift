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

    /// The uid that owns process `pid` (its real uid, as /proc shows it); nil when none.
    public static func ownerUID(of pid: Int32) -> uid_t? {
        var info = stat()
        guard pid > 0, stat("/proc/\(pid)", &info) == 0 else { return nil }
        return info.st_uid
    }

    /// True while this very process exists and is not a zombie.
    public var isAlive: Bool {
        guard let stat = ProcessStat.read(pid: pid) else { return false }
        return stat.startTime == startTime && stat.isLive
    }

    public var description: String { "pid \(pid) (start \(startTime))" }
}

/// The fields of `/proc/PID/stat` procrefd needs.
public struct ProcessStat: Sendable, Equatable {
    /// One-letter state: R, S, D, Z (zombie), T, X, ...
    public let state: Character
    public let startTime: UInt64
    public let parentPID: Int32
    public let processGroup: Int32

    public init(state: Character, startTime: UInt64, parentPID: Int32, processGroup: Int32) {
        self.state = state
        self.startTime = startTime
        self.parentPID = parentPID
        self.processGroup = processGroup
    }

    /// Neither a zombie nor dead: it can still act.
    public var isLive: Bool { state != "Z" && state != "X" }

    public static func read(pid: Int32) -> ProcessStat? {
        guard pid > 0, let bytes = readSmallFileBytes("/proc/\(pid)/stat", limit: 4096) else { return nil }
        return parse(bytes)
    }

    public static func parse(_ line: String) -> ProcessStat? { parse(Array(line.utf8)) }

    /// Parses the stat line. The command name (field 2) may hold spaces and parentheses, so
    /// fields are counted from the last ')'. Byte-wise: holder spawns read it every time.
    public static func parse(_ line: [UInt8]) -> ProcessStat? {
        guard let close = line.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let space = UInt8(ascii: " ")
        var state: UInt8?
        var parent: Int32?
        var group: Int32?
        var field = 3
        var index = close + 1
        while index < line.count {
            while index < line.count, line[index] == space { index += 1 }
            let start = index
            while index < line.count, line[index] != space, line[index] != UInt8(ascii: "\n") { index += 1 }
            guard start < index else { break }
            // Numbers this short make small strings: no allocation.
            let token = line[start..<index]
            switch field {
            case 3: state = token.first
            case 4: parent = Int32(String(decoding: token, as: UTF8.self))
            case 5: group = Int32(String(decoding: token, as: UTF8.self))
            case 22:
                guard let state, let parent, let group, let startTime = UInt64(String(decoding: token, as: UTF8.self)) else { return nil }
                return ProcessStat(
                    state: Character(Unicode.Scalar(state)), startTime: startTime, parentPID: parent, processGroup: group)
            default: break
            }
            field += 1
        }
        return nil
    }
}

/// Reads a small file (procfs, PID file) in one go; nil when it cannot be opened.
public func readSmallFile(_ path: String, limit: Int = 64 * 1024) -> String? {
    readSmallFileBytes(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
}

/// The bytes of a small file; nil when it cannot be opened.
public func readSmallFileBytes(_ path: String, limit: Int) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: min(limit, 4096))
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return bytes
}
