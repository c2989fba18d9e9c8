import Glibc

/// Every process on the host as procfs lists it, for the questions a pid alone cannot
/// answer: who descends from whom, who carries a marker in its environment.
public struct ProcessScan: Sendable {
    public struct Entry: Sendable, Equatable {
        public let pid: Int32
        public let stat: ProcessStat
    }

    /// Live processes (no zombies), by pid.
    public let entries: [Int32: Entry]

    /// Reads /proc once.
    public static func now() -> ProcessScan {
        var entries: [Int32: Entry] = [:]
        for pid in procPIDs() {
            guard let stat = ProcessStat.read(pid: pid), stat.isLive else { continue }
            entries[pid] = Entry(pid: pid, stat: stat)
        }
        return ProcessScan(entries: entries)
    }

    /// The pids in /proc, whatever their state.
    public static func procPIDs() -> [Int32] {
        guard let stream = opendir("/proc") else { return [] }
        defer { closedir(stream) }
        var pids: [Int32] = []
        while let entry = readdir(stream) {
            let first = entry.pointee.d_name.0
            guard first >= 0x31 && first <= 0x39 else { continue }  // "1"..."9"
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }

    /// `roots` and every live process that descends from one of them.
    public func descendants(of roots: Set<Int32>) -> Set<Int32> {
        var children: [Int32: [Int32]] = [:]
        for entry in entries.values { children[entry.stat.parentPID, default: []].append(entry.pid) }
        var found = roots.filter { entries[$0] != nil }
        var queue = Array(found)
        while let next = queue.popLast() {
            for child in children[next] ?? [] where found.insert(child).inserted { queue.append(child) }
        }
        return found
    }

    /// Live members of process group `group`.
    public func group(_ group: Int32) -> Set<Int32> {
        Set(entries.values.filter { $0.stat.processGroup == group }.map(\.pid))
    }

    /// For every live process whose environment sets `variable`, that entry
    /// (`NAME=value`): each environment read once, for questions about many markers.
    public func carriers(of variable: String) -> [String: Set<Int32>] {
        let prefix = Array((variable + "=").utf8)
        var found: [String: Set<Int32>] = [:]
        for pid in entries.keys {
            guard let environ = readSmallFileBytes("/proc/\(pid)/environ", limit: 256 * 1024) else { continue }
            if let entry = environ.split(separator: 0).first(where: { $0.starts(with: prefix) }) {
                found[String(decoding: entry, as: UTF8.self), default: []].insert(pid)
            }
        }
        return found
    }

    /// Live processes whose environment holds the entry `marker` (`NAME=value`), as set
    /// at their exec and inherited by what they started.
    public func carrying(_ marker: String) -> Set<Int32> {
        let needle = Array(marker.utf8)
        return Set(entries.keys.filter { pid in
            guard let environ = readSmallFileBytes("/proc/\(pid)/environ", limit: 256 * 1024) else { return false }
            return environ.split(separator: 0).contains { $0.elementsEqual(needle) }
        })
    }

    /// Live processes of `uid` whose arguments (/proc/PID/cmdline) satisfy `matches`.
    public func running(as uid: uid_t, arguments matches: ([String]) -> Bool) -> [ProcessIdentity] {
        entries.keys.sorted().compactMap { pid in
            guard ProcessIdentity.ownerUID(of: pid) == uid, let raw = readSmallFileBytes("/proc/\(pid)/cmdline", limit: 64 * 1024),
                matches(raw.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) })
            else { return nil }
            return ProcessIdentity.of(pid: pid)
        }
    }
}
