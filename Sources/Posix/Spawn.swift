import CPosixShims
import Glibc

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
        public init() {}
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
        let argv = CStringArray(arguments)
        let envp = CStringArray(environment.map { "\($0.key)=\($0.value)" }.sorted())
        defer {
            argv.free()
            envp.free()
        }
        var raw = procref_spawn_options(
            new_session: options.newSession ? 1 : 0,
            new_process_group: options.newProcessGroup ? 1 : 0,
            stdin_fd: options.standardInput, stdout_fd: options.standardOutput, stderr_fd: options.standardError,
            pass_fd: options.passedDescriptor, pass_fd2: options.secondPassedDescriptor, cwd: nil,
            cgroup_fd: options.cgroup)
        let pid: pid_t = path.withCString { cPath in
            if let cwd = options.workingDirectory {
                return cwd.withCString { cCwd in
                    raw.cwd = cCwd
                    return Children.spawning { procref_spawn(cPath, argv.pointers, envp.pointers, &raw) }
                }
            }
            return Children.spawning { procref_spawn(cPath, argv.pointers, envp.pointers, &raw) }
        }
        guard pid > 0 else { throw SystemCallError.current("posix_spawn") }
        // Start time read right away: the child cannot have been reaped yet (we have not waited).
        let start = ProcessStat.read(pid: pid)?.startTime ?? 0
        return ProcessIdentity(pid: pid, startTime: start)
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

/// A NULL-terminated `char *[]` for exec-style calls; free() when done.
struct CStringArray {
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

    init(_ strings: [String]) {
        pointers = .allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() { pointers[index] = strdup(string) }
        pointers[strings.count] = nil
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
