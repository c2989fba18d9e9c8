import Glibc
import Posix

/// Who may name which user: a procrefd that is not root can only run services as itself.
/// (What services defined over the API may name is `APIConfinement`.)
extension Coordinator {
    /// Any definition: a non-root procrefd names no other user or group (setuid would fail
    /// at every start).
    func checkOwnUser(_ runAs: RunAs) throws(LifecycleError) {
        let uid = getuid()
        guard uid != 0 else { return }
        if let user = runAs.user, let account = Accounts.user(user), account.uid != uid {
            throw .userNotAllowed("user \(user): procrefd runs as uid \(uid), not root; it can only run services as itself")
        }
        for group in [runAs.group].compactMap({ $0 }) + (runAs.supplementaryGroups ?? []) where Accounts.group(group) != getgid() {
            throw .userNotAllowed("group \(group): procrefd runs as uid \(uid), not root; it can only run services in its own group")
        }
    }
}
