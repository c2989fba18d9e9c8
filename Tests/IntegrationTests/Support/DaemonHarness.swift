import Foundation
import Glibc
import Posix
import ProcrefdClient
import Synchronization
import SystemPackage
import Testing

/// The test service script beside this file.
let testServiceScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("test_service.py").path
/// A socket-activated service (see `activated_service.py`).
let activatedServiceScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("activated_service.py").path

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// Where `swift build` put the executables: $PROCREFD_BIN_DIR, else .build/debug.
let binDirectory: String = {
    if let dir = ProcessInfo.processInfo.environment["PROCREFD_BIN_DIR"], !dir.isEmpty { return dir }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug").path
}()

/// A real procrefd on a temporary state directory and an ephemeral loopback port. Every
/// process, semaphore set and file it made is removed by `shutdown()`, even after failures.
final class DaemonHarness: @unchecked Sendable {
    let stateDir: String
    let process: Process
    let port: UInt16
    let token: String
    private var serviceNames: Set<String> = []
    /// Sets seen in status (key + semid), so they can be checked and removed after the
    /// daemon is gone.
    private let knownSets = Mutex<[String: SemaphoreSet]>([:])
    private var extraPIDs: [Int32] = []
    /// False for a second daemon on another's state dir: the first one removes it.
    private let ownsStateDir: Bool

    /// A client over TCP carrying the bearer token.
    var tcp: TestHTTPClient { TestHTTPClient(endpoint: .tcp(port: port), token: token) }
    /// A client over TCP without a token.
    var anonymous: TestHTTPClient { TestHTTPClient(endpoint: .tcp(port: port)) }
    /// A client over the Unix socket.
    var unix: TestHTTPClient { TestHTTPClient(endpoint: .unix(path: "\(stateDir)/procrefd.sock")) }

    /// Starts procrefd; on `stateDir` of an earlier harness when given (a restart).
    init(stateDir existing: String? = nil, extraArguments: [String] = [], environment: [String: String] = [:]) throws {
        ownsStateDir = existing == nil
        stateDir = try existing ?? makeTemporaryDirectory()
        process = Process()
        process.executableURL = URL(fileURLWithPath: "\(binDirectory)/procrefd")
        process.arguments = ["serve", "--state-dir", stateDir, "--port", "0", "--log-level", "warning"] + extraArguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        // The first stdout line says where it listens.
        let line = try readLine(output.fileHandleForReading, timeout: 20)
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let tcp = object["tcp"] as? String, let port = UInt16(tcp.split(separator: ":").last ?? "")
        else { throw TestHTTPClient.Failure(description: "unexpected ready line: \(line)") }
        self.port = port
        token = try String(contentsOfFile: "\(stateDir)/token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A unique service name for this test (names are global on the host: semaphore keys).
    func uniqueName(_ prefix: String) -> String {
        let name = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        serviceNames.insert(name)
        return name
    }

    /// Names this harness cleans up although another one defined them.
    func adoptServiceName(_ name: String) { serviceNames.insert(name) }

    /// kill -9 of procrefd: holders and services stay behind, as after a crash.
    func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM, waited for: with `--on-exit handoff`, holders, services and front doors stay
    /// for the next procrefd.
    func terminate() {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }

    /// Registers a process the test started itself, to be killed at shutdown.
    func adopt(pid: Int32) { extraPIDs.append(pid) }

    /// A `sleep 300` the test may name as a client (or a bystander), killed at shutdown.
    func startSleeper() throws -> Process {
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["300"]
        try sleeper.run()
        adopt(pid: sleeper.processIdentifier)
        return sleeper
    }

    /// Defines a service that listens on a Unix socket in the state dir, healthy once it
    /// listens (Support/test_service.py; `arguments` select its misbehaviour). `extra` adds
    /// definition fields. Returns the socket path.
    @discardableResult
    func defineSocketService(_ name: String, extra: [String: Any] = [:], arguments: [String] = []) throws -> String {
        let socketPath = "\(stateDir)/\(name).svc.sock"
        var body: [String: Any] = [
            "start": ["python3", testServiceScript, socketPath] + arguments,
            "health": ["unix": socketPath, "timeout_ms": 500],
            "ready_timeout_ms": 10_000,
            "stop_timeout_ms": 3_000,
        ]
        body.merge(extra) { $1 }
        let response = try unix.send("PUT", "/v1/services/\(name)", json: body)
        guard response.status == 201 else { throw TestHTTPClient.Failure(description: "define \(name): \(response.status) \(response.text)") }
        _ = semaphoreSet(name)
        return socketPath
    }

    func service(_ name: String) throws -> [String: Any] { try unix.get("/v1/services/\(name)").json }

    /// Takes a one-minute TTL lease on `name` over the Unix socket; returns its id.
    func leaseID(_ name: String) throws -> String {
        let response = try unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
        guard response.status == 201, let id = response.json["id"] as? String else {
            throw TestHTTPClient.Failure(description: "lease on \(name): \(response.status) \(response.text)")
        }
        return id
    }

    /// The state dir's scope (`DEVICE.INODE`), from which procrefd derives its keys.
    var scope: String {
        let identity = Files.identity(stateDir)
        return "\(identity?.device ?? 0).\(identity?.inode ?? 0)"
    }

    /// The service's set as its status shows it (remembered), or at the key derived for it.
    func semaphoreSet(_ service: String) -> SemaphoreSet? {
        if let known = knownSets.withLock({ $0[service] }) { return known }
        if let status = try? self.service(service), let key = status["key"] as? Int, let id = status["semid"] as? Int {
            let set = SemaphoreSet(key: Int32(key), id: Int32(id))
            knownSets.withLock { $0[service] = set }
            return set
        }
        return try? SemaphoreSet.existing(key: SemaphoreSet.key(scope: scope, service: service))
    }

    /// Forgets the remembered set of `service` (procrefd replaced it): the next look reads status.
    func forgetSemaphoreSet(_ service: String) { knownSets.withLock { $0[service] = nil } }

    /// The kernel count of the service's set; -1 when the set is gone.
    func kernelCount(_ service: String) throws -> Int {
        guard let set = semaphoreSet(service) else { return -1 }
        do { return try set.count() } catch {
            if error.errno == .invalidArgument || error.errno == .identifierRemoved { return -1 }
            throw error
        }
    }

    /// True once the service's set no longer exists.
    func semaphoreSetGone(_ service: String) -> Bool {
        guard let set = semaphoreSet(service) else { return true }
        return (try? set.stat()) == nil
    }

    func events(service: String? = nil) throws -> [[String: Any]] {
        let query = service.map { "?service=\($0)&limit=1000" } ?? "?limit=1000"
        return try unix.get("/v1/events\(query)").json["events"] as? [[String: Any]] ?? []
    }

    func eventKinds(service: String) throws -> [String] {
        try events(service: service).compactMap { $0["kind"] as? String }
    }

    /// Stops procrefd (SIGTERM, then SIGKILL), kills anything left, removes semaphore sets
    /// and the state directory.
    func shutdown() {
        for name in serviceNames { _ = semaphoreSet(name) }
        let holders = ((try? unix.get("/v1/leases").json["leases"]) as? [[String: Any]] ?? [])
            .compactMap { ($0["holder_pid"] as? Int).map(Int32.init) }
            .compactMap(ProcessIdentity.of(pid:))
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            if !eventually(timeout: 15, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        for pid in extraPIDs { kill(pid, SIGKILL) }
        for holder in holders where holder.isAlive { kill(holder.pid, SIGKILL) }
        killProcesses(mentioning: stateDir)
        guard ownsStateDir else { return }
        for name in serviceNames {
            if let set = semaphoreSet(name), SemaphoreSet.isRecorded(key: set.key, id: set.id, mode: 0o600) {
                for pid in holderPIDs(semid: set.id) { kill(pid, SIGKILL) }
                try? set.remove()
            }
        }
        removeCgroups()
        try? FileManager.default.removeItem(atPath: stateDir)
    }

    /// procrefd's cgroup for this state dir's services (it runs in the test's own cgroup).
    var cgroupRoot: Cgroup? { Cgroup.own()?.child("procrefd-\(scope)") }

    /// Kills what is left in this daemon's service cgroups and removes them (v1 groups of
    /// caps included).
    private func removeCgroups() {
        for own in CgroupControllers.discover().v1.values {
            let root = Cgroup(path: "\(own)/procrefd-\(scope)")
            let services = (try? FileManager.default.contentsOfDirectory(atPath: root.path))?.filter { $0.hasPrefix("svc-") } ?? []
            for name in services {
                let group = root.child(name)
                for pid in group.processes() { kill(pid, SIGKILL) }
                _ = eventually(timeout: 5) { group.processes().isEmpty }
                try? group.remove()
            }
            try? root.remove()
        }
        guard let root = cgroupRoot, root.exists else { return }
        let services = (try? FileManager.default.contentsOfDirectory(atPath: root.path))?.filter { $0.hasPrefix("svc-") } ?? []
        for name in services {
            let cgroup = root.child(name)
            cgroup.killAll()
            _ = eventually(timeout: 5) { !cgroup.isPopulated }
            try? cgroup.remove()
        }
        try? root.remove()
    }
}

/// Runs `body` with a fresh daemon and always shuts it down.
func withDaemon(_ body: (DaemonHarness) throws -> Void) throws {
    let daemon = try DaemonHarness()
    defer { daemon.shutdown() }
    try body(daemon)
}

/// Runs `body` with a fresh daemon reading `config` as its config file (in a directory of its
/// own), and always shuts it down.
func withDaemon(config: String, _ body: (DaemonHarness) throws -> Void) throws {
    let dir = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try config.write(toFile: "\(dir)/procrefd.toml", atomically: true, encoding: .utf8)
    let daemon = try DaemonHarness(extraArguments: ["--config", "\(dir)/procrefd.toml"])
    defer { daemon.shutdown() }
    try body(daemon)
}

func makeTemporaryDirectory() throws -> String {
    // Short paths: a Unix socket path must fit in 108 bytes.
    let path = "/tmp/prd-\(UUID().uuidString.prefix(13).lowercased())"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
    return path
}

/// Kills every process whose command line mentions `marker` (services started with paths in
/// a test's state dir). Holders are killed by pid through the daemon's own drain.
func killProcesses(mentioning marker: String) {
    for pid in pidsMentioning(marker) { kill(pid, SIGKILL) }
}

func pidsMentioning(_ marker: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in
        guard pid != getpid(), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data, as: UTF8.self).contains(marker)
    }
}

/// procref-holder processes on a semaphore set (`procref-holder SEMID TTL CLIENT`).
func holderPIDs(semid: Int32) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let argv = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return argv.count >= 2 && argv[0].hasSuffix("procref-holder") && argv[1] == String(semid)
    }
}

/// Runs `procrefd ARGS` to completion (bounded) and returns its exit code and output.
func runProcrefd(_ arguments: [String], timeout: Double = 60) throws -> (code: Int32, stdout: String, stderr: String) {
    try runProgram("\(binDirectory)/procrefd", arguments, timeout: timeout)
}

/// Runs a program to its end (killed past `timeout` seconds): exit code, stdout, stderr.
func runProgram(_ path: String, _ arguments: [String], timeout: Double = 60) throws -> (code: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    if !eventually(timeout: timeout, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return (process.terminationStatus, stdout, stderr)
}

/// True while `pid` exists and is not a zombie.
func isAlive(_ pid: Int32) -> Bool {
    ProcessIdentity.of(pid: pid)?.isAlive ?? false
}

private func readLine(_ handle: FileHandle, timeout: Double) throws -> String {
    var bytes: [UInt8] = []
    let deadline = Date().addingTimeInterval(timeout)
    let fd = handle.fileDescriptor
    while Date() < deadline {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 100) > 0 else { continue }
        var byte: UInt8 = 0
        guard read(fd, &byte, 1) == 1 else { break }
        if byte == 10 { return String(decoding: bytes, as: UTF8.self) }
        bytes.append(byte)
    }
    throw TestHTTPClient.Failure(description: "procrefd did not report ready (got \(String(decoding: bytes, as: UTF8.self)))")
}

/// True while a live process (not a zombie) is in process group `group`. A zombie has
/// ended; only its parent can reap it, and an adopted service's parent is not procrefd.
func groupRuns(_ group: Int32) -> Bool { !ProcessScan.now().group(group).isEmpty }

/// `procrefd ARGS` running in the background (a follower, say), its standard output
/// collected as it comes. `stop()` kills it; call it in a defer.
final class BackgroundProcrefd {
    let process = Process()
    private let fd: Int32
    private var collected = ""

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "\(binDirectory)/procrefd")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        fd = output.fileHandleForReading.fileDescriptor
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Everything it printed so far.
    func output() -> String {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while case let n = chunk.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }), n > 0 {
            collected += String(decoding: chunk[0..<n], as: UTF8.self)
        }
        return collected
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
