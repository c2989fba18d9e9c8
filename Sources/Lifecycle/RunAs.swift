import FoundationEssentials
import Glibc
import Posix
import Wire

/// Who a service runs as and within which limits: its user and groups, umask, rlimits, and
/// the memory, CPU and process caps of its cgroup. Part of a `ServiceDefinition` (the same
/// keys at its top level, in JSON and in TOML). Users and groups are names or numbers,
/// resolved when the definition is accepted and again at each start.
public struct RunAs: Sendable, Equatable {
    public var user: String?
    public var group: String?
    public var supplementaryGroups: [String]?
    /// Octal, e.g. "027".
    public var umask: String?
    /// setrlimit in the child before exec, soft = hard (see `RunAs.resources`).
    public var rlimits: [String: UInt64] = [:]
    /// Bytes (the definition may say 512M, 2G).
    public var memoryMax: Int64?
    /// A fraction of one CPU (0.5 = half a CPU).
    public var cpuMax: Double?
    public var pidsMax: Int?

    public init() {}

    /// The rlimits a definition may set, by the name it uses, with Linux's numbers
    /// (<bits/resource.h>; Glibc's module does not export the Linux-only ones).
    public static let resources: [String: Int32] = [
        "cpu": 0, "fsize": 1, "stack": 3, "core": 4, "nproc": 6, "nofile": 7, "memlock": 8, "as": 9,
    ]

    enum Keys: String, CodingKey, CaseIterable {
        case user, group, umask, rlimits
        case supplementaryGroups = "supplementary_groups"
        case memoryMax = "memory_max"
        case cpuMax = "cpu_max"
        case pidsMax = "pids_max"
    }

    /// The first field set, for a lock (which runs nothing) to refuse.
    var firstField: String? {
        if user != nil { return Keys.user.rawValue }
        if group != nil { return Keys.group.rawValue }
        if supplementaryGroups != nil { return Keys.supplementaryGroups.rawValue }
        if umask != nil { return Keys.umask.rawValue }
        if !rlimits.isEmpty { return Keys.rlimits.rawValue }
        if memoryMax != nil { return Keys.memoryMax.rawValue }
        if cpuMax != nil { return Keys.cpuMax.rawValue }
        if pidsMax != nil { return Keys.pidsMax.rawValue }
        return nil
    }

    /// Whether a cgroup cap is asked for.
    public var hasCaps: Bool { memoryMax != nil || cpuMax != nil || pidsMax != nil }

    // MARK: Decoding

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        user = try c.decodeNameOrID(.user)
        group = try c.decodeNameOrID(.group)
        if c.contains(.supplementaryGroups) {
            var list = try c.nestedUnkeyedContainer(forKey: .supplementaryGroups)
            var groups: [String] = []
            while !list.isAtEnd {
                if let number = try? list.decode(UInt32.self) { groups.append(String(number)) } else { groups.append(try list.decode(String.self)) }
            }
            supplementaryGroups = groups
        }
        umask = try c.decodeIfPresent(String.self, forKey: .umask)
        rlimits = try c.decodeIfPresent([String: UInt64].self, forKey: .rlimits) ?? [:]
        if c.contains(.memoryMax) {
            if let bytes = try? c.decode(Int64.self, forKey: .memoryMax) {
                memoryMax = bytes
            } else {
                let text = try c.decode(String.self, forKey: .memoryMax)
                guard let bytes = Self.bytes(text) else {
                    throw DefinitionError(field: "memory_max", message: "bytes, or a number with K, M or G (e.g. 512M)")
                }
                memoryMax = bytes
            }
        }
        cpuMax = try c.decodeIfPresent(Double.self, forKey: .cpuMax)
        pidsMax = try c.decodeIfPresent(Int.self, forKey: .pidsMax)
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encodeIfPresent(user, forKey: .user)
        try c.encodeIfPresent(group, forKey: .group)
        try c.encodeIfPresent(supplementaryGroups, forKey: .supplementaryGroups)
        try c.encodeIfPresent(umask, forKey: .umask)
        if !rlimits.isEmpty { try c.encode(rlimits, forKey: .rlimits) }
        try c.encodeIfPresent(memoryMax, forKey: .memoryMax)
        try c.encodeIfPresent(cpuMax, forKey: .cpuMax)
        try c.encodeIfPresent(pidsMax, forKey: .pidsMax)
    }

    /// "512M" → 536870912 (K, M, G are powers of 1024); a plain number is bytes.
    static func bytes(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        guard let last = text.uppercased().last else { return nil }
        if let unit = units[last] { return Int64(text.dropLast()).flatMap { $0.multipliedReportingOverflow(by: unit).overflow ? nil : $0 * unit } }
        return Int64(text)
    }

    // MARK: Checking

    /// Checks every field, users and groups included (they must exist now).
    func validate() throws(DefinitionError) {
        if let user, Accounts.user(user) == nil { throw DefinitionError(field: "user", message: "no such user: \(user)") }
        if let group, Accounts.group(group) == nil { throw DefinitionError(field: "group", message: "no such group: \(group)") }
        for name in supplementaryGroups ?? [] where Accounts.group(name) == nil {
            throw DefinitionError(field: "supplementary_groups", message: "no such group: \(name)")
        }
        if let umask, umask.isEmpty || umask.count > 4 || !umask.allSatisfy({ ("0"..."7").contains($0) })
            || UInt16(umask, radix: 8).map({ $0 > 0o777 }) ?? true
        {
            throw DefinitionError(field: "umask", message: "an octal string within 000...777 (e.g. \"027\")")
        }
        for name in rlimits.keys.sorted() where Self.resources[name] == nil {
            throw DefinitionError(field: "rlimits.\(name)", message: "one of \(Self.resources.keys.sorted().joined(separator: ", "))")
        }
        if let memoryMax, !(4_096...(1 << 50)).contains(memoryMax) {
            throw DefinitionError(field: "memory_max", message: "must be within 4096 bytes...1P")
        }
        if let cpuMax, !(0.01...1024).contains(cpuMax) {
            throw DefinitionError(field: "cpu_max", message: "a fraction of one CPU within 0.01...1024")
        }
        if let pidsMax, !(1...4_194_304).contains(pidsMax) {
            throw DefinitionError(field: "pids_max", message: "must be within 1...4194304")
        }
    }

    // MARK: At start

    /// The user, groups and limits to spawn with; throws the reason the start cannot go on
    /// (a user or group gone since the definition was accepted).
    func credentials() throws(RunAsError) -> Spawner.Credentials? {
        guard user != nil || group != nil || supplementaryGroups != nil else { return nil }
        let account = try user.map { (name) throws(RunAsError) -> UserAccount in
            guard let account = Accounts.user(name) else { throw RunAsError("user \(name) no longer exists") }
            return account
        }
        let gid = try group.map { (name) throws(RunAsError) -> gid_t in
            guard let gid = Accounts.group(name) else { throw RunAsError("group \(name) no longer exists") }
            return gid
        } ?? account?.gid ?? getgid()
        var groups: [gid_t]
        if let supplementaryGroups {
            groups = []
            for name in supplementaryGroups {
                guard let id = Accounts.group(name) else { throw RunAsError("group \(name) no longer exists") }
                groups.append(id)
            }
        } else if let account {
            groups = Accounts.groups(of: account).sorted()
        } else {
            groups = [gid]
        }
        return Spawner.Credentials(uid: account?.uid ?? getuid(), gid: gid, groups: groups)
    }

    var resourceLimits: [Spawner.ResourceLimit] {
        rlimits.sorted { $0.key < $1.key }.compactMap { name, value in
            Self.resources[name].map { Spawner.ResourceLimit(resource: $0, soft: value, hard: value) }
        }
    }

    var umaskValue: mode_t? { umask.flatMap { mode_t($0, radix: 8) } }
}

/// Why a start cannot run as its definition says.
struct RunAsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension KeyedDecodingContainer where Key == RunAs.Keys {
    /// A user or group: a name, or a number.
    func decodeNameOrID(_ key: Key) throws -> String? {
        guard contains(key) else { return nil }
        if let number = try? decode(UInt32.self, forKey: key) { return String(number) }
        return try decode(String.self, forKey: key)
    }
}
