import Glibc

/// A cgroup v2 directory: who is in it, and how to end them all.
///
/// procrefd uses cgroup v2 to track processes only (`cgroup.procs`, `cgroup.events`,
/// `cgroup.kill`), which needs no controller, so it works on hybrid hosts too, where the
/// v2 mount carries no controllers and the v1 hierarchies carry them.
public struct Cgroup: Sendable, Equatable {
    /// Absolute path of the directory (under the cgroup2 mount).
    public let path: String

    public init(path: String) { self.path = path }

    /// This process's own cgroup v2 directory, found through /proc/self/mountinfo (the
    /// cgroup2 mount) and /proc/self/cgroup (the `0::/…` line); nil without cgroup v2.
    public static func own() -> Cgroup? {
        guard let membership = readSmallFile("/proc/self/cgroup"),
            let line = membership.split(separator: "\n").first(where: { $0.hasPrefix("0::") })
        else { return nil }
        let relative = String(line.dropFirst(3))
        guard let mountinfo = readSmallFile("/proc/self/mountinfo", limit: 1 << 20) else { return nil }
        for entry in mountinfo.split(separator: "\n") {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
            let fields = entry.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count, fields[dash + 1] == "cgroup2",
                fields.count > 4
            else { continue }
            let root = String(fields[3]), mountPoint = Self.unescape(String(fields[4]))
            var inside = relative
            if root != "/" {
                guard inside.hasPrefix(root) else { continue }
                inside = String(inside.dropFirst(root.count))
            }
            let path = inside == "/" || inside.isEmpty ? mountPoint : mountPoint + inside
            return Cgroup(path: path)
        }
        return nil
    }

    /// mountinfo escapes spaces and the like as `\ooo`.
    private static func unescape(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3, let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The child cgroup `name` (not created).
    public func child(_ name: String) -> Cgroup { Cgroup(path: "\(path)/\(name)") }

    /// Creates the directory (mode 0755); an existing one is fine.
    public func create() throws(SystemCallError) {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw .current("mkdir(\(path))") }
    }

    /// Whether the directory exists.
    public var exists: Bool { Files.kind(path) != nil }

    /// The processes in it (`cgroup.procs`; exited ones are no longer listed).
    public func processes() -> [Int32] {
        guard let text = readSmallFile("\(path)/cgroup.procs", limit: 1 << 20) else { return [] }
        return text.split(separator: "\n").compactMap { Int32($0) }
    }

    /// True while any process is in it or below (`cgroup.events`: populated 1).
    public var isPopulated: Bool {
        readSmallFile("\(path)/cgroup.events")?.contains("populated 1") ?? false
    }

    /// The directory, open (close-on-exec), for a child to be cloned into. The caller
    /// closes it.
    public func openForSpawning() throws(SystemCallError) -> Int32 {
        try check("open(\(path))", open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
    }

    /// Freezes (or thaws) every process in it (`cgroup.freeze`, a core file of cgroup v2):
    /// frozen, they use no CPU and keep their memory and sockets. False when it cannot.
    @discardableResult
    public func setFrozen(_ frozen: Bool) -> Bool { Files.writeSmall("\(path)/cgroup.freeze", frozen ? "1" : "0") }

    /// Whether the cgroup is frozen, as `cgroup.events` says (`frozen 1`).
    public var isFrozen: Bool { readSmallFile("\(path)/cgroup.events")?.contains("frozen 1") == true }

    /// SIGKILL to everything in it, at once (`cgroup.kill`, Linux 5.14+), else one by one.
    public func killAll() {
        if Files.writeSmall("\(path)/cgroup.kill", "1") { return }
        for pid in processes() { kill(pid, SIGKILL) }
    }

    /// Removes the (empty) directory. A missing one is not an error.
    public func remove() throws(SystemCallError) {
        if rmdir(path) == 0 || errno == ENOENT { return }
        throw .current("rmdir(\(path))")
    }
}
