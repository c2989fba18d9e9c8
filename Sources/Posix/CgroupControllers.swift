import Glibc

/// Where the controllers that caps need (memory, pids, cpu) are on this host. On hybrid
/// hosts the cgroup v2 mount carries few or none of them and cgroup v1 hierarchies carry the
/// rest: each cap goes to whichever has its controller (v2 first).
public struct CgroupControllers: Sendable, Equatable {
    /// For each controller of a v1 hierarchy: this process's own group there (absolute).
    public let v1: [String: String]

    public init(v1: [String: String]) { self.v1 = v1 }

    /// Reads /proc/self/cgroup (`N:memory:/path` lines) and /proc/self/mountinfo (the
    /// `cgroup` mounts and the controllers in their super options).
    public static func discover() -> CgroupControllers {
        guard let membership = readSmallFile("/proc/self/cgroup"), let mountinfo = readSmallFile("/proc/self/mountinfo", limit: 1 << 20)
        else { return CgroupControllers(v1: [:]) }
        var own: [String: String] = [:]  // controller -> path within its hierarchy
        for line in membership.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, !parts[1].isEmpty else { continue }
            for controller in parts[1].split(separator: ",") { own[String(controller)] = String(parts[2]) }
        }
        var found: [String: String] = [:]
        for entry in mountinfo.split(separator: "\n") {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
            let fields = entry.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash + 3 < fields.count, fields[dash + 1] == "cgroup" else { continue }
            let root = String(fields[3]), mountPoint = String(fields[4])
            for option in fields[dash + 3].split(separator: ",") {
                let controller = String(option)
                guard ["memory", "pids", "cpu"].contains(controller), var inside = own[controller] else { continue }
                if root != "/" {
                    guard inside.hasPrefix(root) else { continue }
                    inside = String(inside.dropFirst(root.count))
                }
                found[controller] = inside == "/" || inside.isEmpty ? mountPoint : mountPoint + inside
            }
        }
        return CgroupControllers(v1: found)
    }
}

extension Cgroup {
    /// The controllers this group may use (`cgroup.controllers`, v2).
    public var controllers: Set<String> {
        Set((readSmallFile("\(path)/cgroup.controllers") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    /// Lets this group's children use `controller` (`+controller` in `cgroup.subtree_control`).
    public func enableForChildren(_ controller: String) -> Bool {
        Files.writeSmall("\(path)/cgroup.subtree_control", "+\(controller)")
    }
}

extension Files {
    /// Writes a short text to an existing file (a cgroup or procfs knob) in one write.
    @discardableResult
    public static func writeSmall(_ path: String, _ text: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return text.withCString { write(fd, $0, strlen($0)) } == text.utf8.count
    }
}
