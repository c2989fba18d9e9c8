import Glibc
import Posix

/// Who may name which user: a procrefd that is not root can only run services as itself,
/// and services defined over the API may run only as a user of `security.api_users`, in
/// groups of that user. Config-file services are trusted.
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

    /// An API definition: its `user` from `security.api_users`, its groups among that user's.
    func checkAPIUser(_ runAs: RunAs) throws(LifecycleError) {
        let groups = [runAs.group].compactMap { $0 } + (runAs.supplementaryGroups ?? [])
        guard let user = runAs.user else {
            if let group = groups.first {
                throw .userNotAllowed("group \(group): a service defined over the API names groups only with a user of security.api_users")
            }
            return
        }
        let allowed = Set(config.apiUsers.compactMap { Accounts.user($0)?.uid })
        guard let account = Accounts.user(user), allowed.contains(account.uid) else {
            throw .userNotAllowed("user \(user) is not in security.api_users (services defined over the API may run only as those)")
        }
        let own = Accounts.groups(of: account)
        for group in groups where Accounts.group(group).map({ !own.contains($0) }) ?? true {
            throw .userNotAllowed("group \(group): user \(account.name) is not a member")
        }
    }
}
