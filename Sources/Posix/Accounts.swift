import Glibc

/// A user of the host's account database (passwd).
public struct UserAccount: Sendable, Equatable {
    public let name: String
    public let uid: uid_t
    /// Its primary group.
    public let gid: gid_t
    public let home: String
}

/// Users and groups by name or number, through the C library (passwd and group databases,
/// NSS included).
public enum Accounts {
    /// The user named `nameOrID` (a name, or a number that names an existing user).
    public static func user(_ nameOrID: String) -> UserAccount? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        let rc: Int32
        if let uid = uid_t(nameOrID) {
            rc = getpwuid_r(uid, &entry, &buffer, buffer.count, &result)
        } else {
            rc = getpwnam_r(nameOrID, &entry, &buffer, buffer.count, &result)
        }
        guard rc == 0, let found = result?.pointee else { return nil }
        return UserAccount(
            name: String(cString: found.pw_name), uid: found.pw_uid, gid: found.pw_gid,
            home: found.pw_dir.map { String(cString: $0) } ?? "/")
    }

    /// The group named `nameOrID` (a name, or a number that names an existing group).
    public static func group(_ nameOrID: String) -> gid_t? {
        var entry = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>?
        var buffer = [CChar](repeating: 0, count: 65_536)
        let rc: Int32
        if let gid = gid_t(nameOrID) {
            rc = getgrgid_r(gid, &entry, &buffer, buffer.count, &result)
        } else {
            rc = getgrnam_r(nameOrID, &entry, &buffer, buffer.count, &result)
        }
        guard rc == 0, let found = result?.pointee else { return nil }
        return found.gr_gid
    }

    /// The groups `user` belongs to: its primary group and those that list it.
    public static func groups(of user: UserAccount) -> Set<gid_t> {
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(user.name, user.gid, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(user.name, user.gid, &list, &count)
        }
        return Set(list.prefix(Int(max(0, count)))).union([user.gid])
    }

    /// This process's user id.
    public static var currentUID: uid_t { getuid() }
}
