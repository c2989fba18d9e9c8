import FoundationEssentials
import Glibc
import Posix
import Wire

/// What services defined over the API may do: `[security] api_users`, `api_programs` and
/// `api_env_allow`. Setting `api_users` or `api_programs` asks for confinement: whoever may
/// define services over the API (the admin token, the Unix socket, its group) then cannot
/// run code as root through them. Without either, the API admin is root-equivalent by
/// design. Config-file services are the operator's own and are not confined.
public struct APIConfinement: Sendable, Equatable {
    /// Programs (absolute paths) that API services and their exec health checks may run;
    /// nil: any.
    public var programs: [String]?
    /// Users (names or numbers) API services may run as.
    public var users: [String]
    /// Environment keys allowed although they change how programs load or run code
    /// (a model server may need `LD_LIBRARY_PATH`).
    public var envAllow: [String]

    public init(programs: [String]? = nil, users: [String] = [], envAllow: [String] = []) {
        self.programs = programs
        self.users = users
        self.envAllow = envAllow
    }

    /// Whether the operator asked for confinement.
    public var isConfined: Bool { programs != nil || !users.isEmpty }

    /// Keys that make a program load other code or run other commands: the dynamic loader's,
    /// glibc's other unsafe ones (those it drops for setuid programs), and interpreters'.
    static let codeLoadingPrefixes = ["LD_", "MALLOC_", "PYTHON", "PERL5", "RUBY"]
    static let codeLoadingKeys: Set<String> = [
        "GCONV_PATH", "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF",
        "RES_OPTIONS", "TZDIR", "GLIBC_TUNABLES", "PERLLIB", "NODE_OPTIONS", "NODE_PATH", "BASH_ENV", "ENV", "SHELLOPTS",
        "BASHOPTS", "PS4", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS",
    ]

    /// Whether `key` changes how programs load or run code.
    public static func loadsCode(_ key: String) -> Bool {
        codeLoadingKeys.contains(key) || codeLoadingPrefixes.contains { key.hasPrefix($0) }
    }

    /// Throws the first rule an API definition breaks (its programs already resolved).
    func check(_ definition: ServiceDefinition) throws(LifecycleError) {
        guard !definition.isLock else { return }  // a lock runs nothing
        if let programs {
            var used = [definition.start[0]] + definition.hooks.compactMap(\.argv.first)
            if case .exec(let argv) = definition.health?.kind { used.append(argv[0]) }
            for program in used where !programs.contains(program) { throw .programNotAllowed(program) }
        }
        try checkUser(definition.runAs)
        try checkFront(definition.frontAddresses)
        guard isConfined else { return }
        for key in definition.env.keys.sorted() where Self.loadsCode(key) && !envAllow.contains(key) {
            throw .invalidField(DefinitionError(
                field: "env.\(key)", message: "changes how programs load code; refused for services defined over the API (allow it in [security] api_env_allow)"))
        }
    }

    /// A front defined over the API listens on loopback only, and never at a path: procrefd
    /// would create the socket file wherever the caller names (the config file may do both).
    private func checkFront(_ addresses: [FrontAddress]) throws(LifecycleError) {
        for address in addresses {
            switch address {
            case .tcp(let host, _) where host.hasPrefix("127.") || host == "::1": continue
            case .tcp, .unix:
                throw .invalidField(DefinitionError(
                    field: "front", message: "\(address): a service defined over the API may front only a loopback TCP address (define the others in the config file)"))
            }
        }
    }

    /// Its `user` from `api_users` (left out: procrefd's own user, which must then be
    /// listed when confined), its groups among that user's.
    private func checkUser(_ runAs: RunAs) throws(LifecycleError) {
        let groups = [runAs.group].compactMap { $0 } + (runAs.supplementaryGroups ?? [])
        let allowed = Set(users.compactMap { Accounts.user($0)?.uid })
        guard let user = runAs.user else {
            if let group = groups.first {
                throw .userNotAllowed("group \(group): a service defined over the API names groups only with a user of security.api_users")
            }
            if isConfined && !allowed.contains(geteuid()) {
                let own = Accounts.user(String(geteuid()))?.name ?? "uid \(geteuid())"
                throw .userNotAllowed("no user given: the service would run as procrefd's own user (\(own)), which security.api_users does not list")
            }
            return
        }
        guard let account = Accounts.user(user), allowed.contains(account.uid) else {
            throw .userNotAllowed("user \(user) is not in security.api_users (services defined over the API may run only as those)")
        }
        let own = Accounts.groups(of: account)
        for group in groups where Accounts.group(group).map({ !own.contains($0) }) ?? true {
            throw .userNotAllowed("group \(group): user \(account.name) is not a member")
        }
    }
}

extension ServiceDefinition {
    /// The definition with `start[0]` and an exec health check's `argv[0]` resolved to
    /// absolute paths, once, as it is accepted: it is exec'd by that path at every start, so
    /// a program dropped later into a directory of its PATH is never picked up instead.
    func resolvingPrograms(searchPath procrefdPath: String?) throws(LifecycleError) -> ServiceDefinition {
        guard !isLock else { return self }
        let searchPath = env["PATH"] ?? procrefdPath ?? Spawner.defaultSearchPath
        func resolve(_ program: String, field: String) throws(LifecycleError) -> String {
            if program.hasPrefix("/") { return program }
            guard !program.contains("/") else {
                throw .invalidField(DefinitionError(field: field, message: "a program name or an absolute path, not the relative path \(program)"))
            }
            guard let found = Spawner.resolve(program, searchPath: searchPath) else {
                throw .invalidField(DefinitionError(field: field, message: "no program \(program) in PATH (\(searchPath))"))
            }
            return found
        }
        var resolved = self
        resolved.start[0] = try resolve(start[0], field: "start")
        if case .exec(var argv) = health?.kind {
            argv[0] = try resolve(argv[0], field: "health.exec")
            resolved.health?.kind = .exec(argv)
        }
        func resolveHook(_ argv: [String]?, _ hook: ServiceHook) throws(LifecycleError) -> [String]? {
            guard let argv, let program = argv.first, !program.isEmpty else { return argv }
            return [try resolve(program, field: hook.rawValue)] + argv.dropFirst()
        }
        resolved.preStart = try resolveHook(preStart, .preStart)
        resolved.postReady = try resolveHook(postReady, .postReady)
        resolved.stopCommand = try resolveHook(stopCommand, .stopCommand)
        return resolved
    }
}
