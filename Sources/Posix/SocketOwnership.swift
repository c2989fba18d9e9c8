import Foundation

/// Which processes own which listening sockets, read from procfs. Lets a health check tell
/// "our service listens here" from "some orphan holds the port".
public enum SocketOwnership {
    /// Inodes of sockets listening on TCP `port` (IPv4 and IPv6).
    public static func listeningInodes(tcpPort port: Int) -> Set<UInt64> {
        var inodes: Set<UInt64> = []
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = readSmallFile(table, limit: 16 << 20) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                // sl local_address rem_address st ... uid timeout inode
                guard fields.count > 9, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":"),
                    Int(fields[1][fields[1].index(after: colon)...], radix: 16) == port, let inode = UInt64(fields[9])
                else { continue }
                inodes.insert(inode)
            }
        }
        return inodes
    }

    /// Inodes of Unix sockets bound to `path` that accept connections.
    public static func listeningInodes(unixPath path: String) -> Set<UInt64> {
        guard let text = readSmallFile("/proc/net/unix", limit: 16 << 20) else { return [] }
        var inodes: Set<UInt64> = []
        for line in text.split(separator: "\n").dropFirst() {
            // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = listening.
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8, String(fields[7...].joined(separator: " ")) == path,
                let flags = Int(fields[3], radix: 16), flags & 0x10000 != 0, let inode = UInt64(fields[6])
            else { continue }
            inodes.insert(inode)
        }
        return inodes
    }

    /// Whether any process of `group` holds one of `inodes` open.
    public static func group(_ group: Int32, holdsAnyOf inodes: Set<UInt64>) -> Bool {
        guard !inodes.isEmpty else { return false }
        for pid in ProcessGroup.members(group) {
            let directory = "/proc/\(pid)/fd"
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
            for fd in fds {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(fd)"),
                    target.hasPrefix("socket:["), let inode = UInt64(target.dropFirst(8).dropLast())
                else { continue }
                if inodes.contains(inode) { return true }
            }
        }
        return false
    }
}

/// Processes of a process group, from procfs.
public enum ProcessGroup {
    public static func members(_ group: Int32) -> [Int32] {
        guard group > 1, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap(Int32.init).filter { pid in
            guard let stat = ProcessStat.read(pid: pid) else { return false }
            return stat.processGroup == group && stat.state != "Z"
        }
    }
}
