import CPosixShims
import Glibc
import SystemPackage

/// Starts programs with posix_spawn (constant cost, unlike fork in a large parent), closing
/// every inherited descriptor above 2 (and above 3 when one is passed).
public struct Spawner: Sendable {
    public struct Options: Sendable {
        /// setsid(): the child outlives procrefd's session (lease holders).
        public var newSession = false
        /// Its own process group, so stopping it reaches its children too (services).
        public var newProcessGroup = false
        /// Descriptors for the child's 0, 1, 2 (-1: /dev/null).
        public var standardInput: Int32 = -1
        public var standardOutput: Int32 = -1
        public var standardError: Int32 = -1
        /// Passed to the child as descriptor 3.
        public var passedDescriptor: Int32 = -1
        /// Passed to the child as descriptor 4 (only together with `passedDescriptor`).
        public var secondPassedDescriptor: Int32 = -1
        public var workingDirectory: String?
        /// A cgroup v2 directory, open: the child starts in that cgroup, before it runs
        /// anything (clone3 with CLONE_INTO_CGROUP; see `procref_spawn_in_cgroup`).
        public var cgroup: Int32 = -1
        /// Who the child runs as: set in the child before exec (setgroups, setgid, setuid),
        /// and checked to have taken.
        public var credentials: Credentials?
        public var umask: mode_t?
        public var resourceLimits: [ResourceLimit] = []
        /// Open `cgroup.procs` files of cgroup v1 groups the child joins before it runs
        /// anything (caps whose controller is only in a v1 hierarchy).
        public var joinCgroups: [Int32] = []
        /// Socket activation, as systemd does it: these listening sockets become the child's
        /// descriptors 3, 4, ..., named in `LISTEN_FDNAMES` by `activationNames`, with
        /// `LISTEN_FDS` their number and `LISTEN_PID` the child's pid (set in the child).
        public var activationSockets: [Int32] = []
        public var activationNames: [String] = []
        public init() {}
    }

    /// The most sockets one spawn passes.
    public static let maxActivationSockets = Int(PROCREF_MAX_LISTEN_FDS)

    /// A user, its group and its supplementary groups, as numbers.
    public struct Credentials: Sendable, Equatable {
        public var uid: uid_t
        public var gid: gid_t
        public var groups: [gid_t]
        public init(uid: uid_t, gid: gid_t, groups: [gid_t]) {
            self.uid = uid
            self.gid = gid
            self.groups = groups
        }
    }

    /// One setrlimit, soft and hard.
    public struct ResourceLimit: Sendable, Equatable {
        public var resource: Int32
        public var soft: UInt64
        public var hard: UInt64
        public init(resource: Int32, soft: UInt64, hard: UInt64) {
            self.resource = resource
            self.soft = soft
            self.hard = hard
        }
    }

    public init() {}

    /// Spawns `arguments[0]` (an absolute path, or searched in PATH) and returns its identity.
    public func spawn(
        arguments: [String], environment: [String: String], options: Options
    ) throws(SystemCallError) -> ProcessIdentity {
        guard let program = arguments.first, !program.isEmpty else {
            throw SystemCallError("posix_spawn", errno: .invalidArgument)
        }
        guard let path = Self.resolve(program, searchPath: environment["PATH"] ?? Self.defaultSearchPath) else {
            throw SystemCallError("posix_spawn", errno: .noSuchFileOrDirectory)
        }
        guard options.activationSockets.count <= Self.maxActivationSockets else {
            throw SystemCallError("posix_spawn", errno: .invalidArgument)
        }
        var environment = environment
        if !options.activationSockets.isEmpty {
            environment["LISTEN_FDS"] = String(options.activationSockets.count)
            environment["LISTEN_FDNAMES"] = options.activationNames.joined(separator: ":")
            environment["LISTEN_PID"] = String(repeating: "0", count: 20)  // room the child writes its pid into
        }
        let argv = CStringArray(arguments)
        let envp = CStringArray(environment.map { "\($0.key)=\($0.value)" }.sorted())
        let listenPIDEntry = options.activationSockets.isEmpty ? nil : envp.entry(withPrefix: "LISTEN_PID=")
        defer {
            argv.free()
            envp.free()
        }
        var failedStep: Int32 = 0
        let limits = options.resourceLimits.map { procref_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) }
        let groups = options.credentials?.groups.map { UInt32($0) } ?? []
        // The child reports a failed set-up step through this pointer: it must outlive the
        // options struct that holds it, up to the spawn's return.
        let pid: pid_t = withUnsafeMutablePointer(to: &failedStep) { failedStepPointer in path.withCString { cPath in
            options.joinCgroups.withUnsafeBufferPointer { joins in options.activationSockets.withUnsafeBufferPointer { activation in
                limits.withUnsafeBufferPointer { rlimits in
                    groups.withUnsafeBufferPointer { groupList in
                        withOptionalCString(options.workingDirectory) { cwd in
                            var raw = procref_spawn_options(
                                new_session: options.newSession ? 1 : 0,
                                new_process_group: options.newProcessGroup ? 1 : 0,
                                stdin_fd: options.standardInput, stdout_fd: options.standardOutput, stderr_fd: options.standardError,
                                pass_fd: options.passedDescriptor, pass_fd2: options.secondPassedDescriptor, cwd: cwd,
                                cgroup_fd: options.cgroup, join_fds: joins.baseAddress, join_count: Int32(joins.count),
                                rlimits: rlimits.baseAddress, rlimit_count: Int32(rlimits.count),
                                umask_value: options.umask.map { Int32($0) } ?? -1,
                                groups: groupList.baseAddress, group_count: options.credentials == nil ? -1 : Int32(groupList.count),
                                gid: options.credentials.map { Int64($0.gid) } ?? -1,
                                uid: options.credentials.map { Int64($0.uid) } ?? -1,
                                failed_step: failedStepPointer,
                                listen_fds: activation.baseAddress, listen_count: Int32(activation.count),
                                listen_pid_entry: listenPIDEntry)
                            return Children.spawning { procref_spawn(cPath, argv.pointers, envp.pointers, &raw) }
                        }
                    }
                }
            } }
        } }
        guard pid > 0 else { throw SystemCallError.current(Self.stepName(failedStep, cwd: options.workingDirectory)) }
        // Start time read right away: the child cannot have been reaped yet (we have not waited).
        let start = ProcessStat.read(pid: pid)?.startTime ?? 0
        return ProcessIdentity(pid: pid, startTime: start)
    }

    /// The call a failed set-up step of the child names in its error.
    static func stepName(_ step: Int32, cwd: String?) -> String {
        switch step {
        case Int32(PROCREF_STEP_CGROUP): return "joining the cgroup v1 groups"
        case Int32(PROCREF_STEP_RLIMIT): return "setrlimit"
        case Int32(PROCREF_STEP_SETGROUPS): return "setgroups"
        case Int32(PROCREF_STEP_SETGID): return "setgid"
        case Int32(PROCREF_STEP_SETUID): return "setuid"
        case Int32(PROCREF_STEP_PRIVILEGES_KEPT): return "dropping privileges (still privileged after setuid)"
        case Int32(PROCREF_STEP_CWD): return "chdir(\(cwd ?? "")) as the service's user"
        case Int32(PROCREF_STEP_EXEC): return "execve"
        default: return "posix_spawn"
        }
    }

    public static let defaultSearchPath = "/usr/local/bin:/usr/bin:/bin"

    /// A program name with a slash is used as is; otherwise the first executable in PATH.
    public static func resolve(_ program: String, searchPath: String) -> String? {
        if program.contains("/") { return program }
        for directory in searchPath.split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

/// A NULL-terminated `char *[]` for exec-style calls; free() when done.
struct CStringArray {
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

    init(_ strings: [String]) {
        pointers = .allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() { pointers[index] = strdup(string) }
        pointers[strings.count] = nil
    }

    /// The first string that begins with `prefix` (writable: the child of a spawn fills in
    /// `LISTEN_PID`).
    func entry(withPrefix prefix: String) -> UnsafeMutablePointer<CChar>? {
        var index = 0
        while let p = pointers[index] {
            if strncmp(p, prefix, prefix.utf8.count) == 0 { return p }
            index += 1
        }
        return nil
    }

    func free() {
        var index = 0
        while let p = pointers[index] {
            Glibc.free(p)
            index += 1
        }
        pointers.deallocate()
    }
}
