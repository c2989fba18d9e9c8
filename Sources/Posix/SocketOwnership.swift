import CPosixShims
import Glibc

/// Which processes own which listening sockets, read from procfs. Lets a health check tell
/// "our service listens here" from "some orphan holds the port".
public enum SocketOwnership {
    /// Inodes of sockets listening on TCP `port` (IPv4 and IPv6): asked of the kernel
    /// (sock_diag, listening sockets only), else read from /proc/net/tcp{,6}, whose size
    /// grows with every connection and TIME_WAIT on the host.
    public static func listeningInodes(tcpPort port: Int) -> Set<UInt64> {
        if let port = UInt16(exactly: port) {
            var found = [UInt64](repeating: 0, count: 64)
            let n = procref_tcp_listening_inodes(port, &found, Int32(found.count))
            if n >= 0 { return Set(found[0..<Int(n)]) }
        }
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
        for line in text.split(separator: "\n").dropFirst() where line.hasSuffix(path) {
            // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = listening.
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8, String(fields[7...].joined(separator: " ")) == path,
                let flags = Int(fields[3], radix: 16), flags & 0x10000 != 0, let inode = UInt64(fields[6])
            else { continue }
            inodes.insert(inode)
        }
        return inodes
    }

    /// Whether `pid` has one of `inodes` among its open descriptors.
    public static func process(_ pid: Int32, holdsAnyOf inodes: Set<UInt64>) -> Bool {
        guard !inodes.isEmpty, pid > 1 else { return false }
        let directory = "/proc/\(pid)/fd"
        guard let stream = opendir(directory) else { return false }
        defer { closedir(stream) }
        var target = [CChar](repeating: 0, count: 64)
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.first?.isNumber == true else { continue }
            let length = readlink("\(directory)/\(name)", &target, target.count - 1)
            guard length > 8 else { continue }
            let text = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // "socket:[12345]"
            guard text.hasPrefix("socket:["), let inode = UInt64(text.dropFirst(8).dropLast()) else { continue }
            if inodes.contains(inode) { return true }
        }
        return false
    }
}
