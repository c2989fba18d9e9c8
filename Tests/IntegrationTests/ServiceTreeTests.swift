import Foundation
import Glibc
import Posix
import ProcrefdClient
import Testing

/// The forking service script beside this file.
let forkingServiceScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Support/forking_service.py").path

/// Nothing of a service escapes: daemonizing services, pid files, strays of a crash, in
/// both tracking modes (a cgroup per service, or the environment marker).
@Suite("Service process trees")
struct ServiceTreeTests {
    static let modes = ["auto", "off"]

    /// A daemon tracking services the given way; checks that it really does.
    func daemon(cgroups mode: String, environment: [String: String] = [:]) throws -> DaemonHarness {
        let daemon = try DaemonHarness(extraArguments: ["--service-cgroups", mode], environment: environment)
        let tracking = try daemon.unix.get("/v1/daemon").json["service_cgroup"]
        #expect(mode == "off" ? tracking is NSNull : tracking is String, "\(String(describing: tracking))")
        return daemon
    }

    /// Defines a daemonizing service; returns the file its processes' pids are written to.
    func defineForking(_ daemon: DaemonHarness, _ name: String, pidFile: Bool) throws -> String {
        let socket = "\(daemon.stateDir)/\(name).svc.sock", pids = "\(daemon.stateDir)/\(name).pids"
        var body: [String: Any] = [
            "start": ["python3", forkingServiceScript, socket, pids] + (pidFile ? ["--pid-file", "\(daemon.stateDir)/\(name).pid"] : []),
            "health": ["unix": socket, "timeout_ms": 500], "ready_timeout_ms": 10_000, "stop_timeout_ms": 3_000,
        ]
        if pidFile { body["pid_file"] = "\(daemon.stateDir)/\(name).pid" }
        let response = try daemon.unix.send("PUT", "/v1/services/\(name)", json: body)
        #expect(response.status == 201, "\(response.text)")
        return pids
    }

    func recordedPIDs(_ file: String) -> [Int32] {
        ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    @Test("a forking service with pid_file: its daemon is the main process; nothing is left after the last release",
          arguments: modes)
    func pidFileService(mode: String) throws {
        let daemon = try daemon(cgroups: mode)
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("fork")
        let pidsFile = try defineForking(daemon, name, pidFile: true)
        let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
        #expect(grant.status == 201, "\(grant.text)")
        let pids = recordedPIDs(pidsFile)
        #expect(pids.count == 2)  // the daemon and its worker, which left the daemon's group
        let status = try daemon.service(name)
        #expect(status["state"] as? String == "ready")
        #expect(status["pid"] as? Int == pids.first.map(Int.init))
        #expect(pids.allSatisfy(isAlive))

        let release = try daemon.unix.send("DELETE", "/v1/leases/\(grant.json["id"] as? String ?? "")")
        #expect(release.status == 200, "\(release.text)")
        #expect(release.json["service_stopped"] as? Bool == true)
        #expect(pids.allSatisfy { !isAlive($0) }, "left: \(pids.filter(isAlive))")
    }

    @Test("a pid_file that is a FIFO, a link or another user's file fails the start at once; an old file is neither read nor deleted")
    func hostilePidFile() throws {
        let daemon = try DaemonHarness()
        defer { daemon.shutdown() }
        let victim = "\(daemon.stateDir)/victim"
        try "precious\n".write(toFile: victim, atomically: false, encoding: .utf8)
        let nobody = try #require(Accounts.user("nobody"))
        let foreign = "\(daemon.stateDir)/foreign.pid"
        try "1\n".write(toFile: foreign, atomically: false, encoding: .utf8)
        #expect(chown(foreign, nobody.uid, nobody.gid) == 0)
        let fifo = "\(daemon.stateDir)/fifo.pid"
        #expect(mkfifo(fifo, 0o600) == 0)
        let link = "\(daemon.stateDir)/link.pid"
        #expect(symlink(victim, link) == 0)
        // An old file naming a live process (pid 1) and never rewritten: stale, so not adopted.
        let stale = "\(daemon.stateDir)/stale.pid"
        try "1\n".write(toFile: stale, atomically: false, encoding: .utf8)
        var old = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, stale, &old, 0) == 0)

        for (file, reason) in [(fifo, "a FIFO"), (link, "a symbolic link"), (foreign, "owned by uid \(nobody.uid)"), (stale, "names no live process")] {
            let name = daemon.uniqueName("pidf")
            let socket = "\(daemon.stateDir)/\(name).svc.sock", pids = "\(daemon.stateDir)/\(name).pids"
            let body: [String: Any] = [
                "start": ["python3", forkingServiceScript, socket, pids], "pid_file": file,
                "health": ["unix": socket, "timeout_ms": 500], "ready_timeout_ms": 3_000, "stop_timeout_ms": 2_000,
            ]
            #expect(try daemon.unix.send("PUT", "/v1/services/\(name)", json: body).status == 201)
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(grant.status == 503, "\(file): \(grant.text)")
            #expect(grant.text.contains(reason), "\(file): \(grant.text)")
            #expect(try daemon.kernelCount(name) == 0)
            #expect(eventually { recordedPIDs(pids).allSatisfy { !isAlive($0) } }, "left: \(recordedPIDs(pids).filter(isAlive))")
        }
        #expect(try daemon.unix.get("/v1/health").status == 200)  // no loop stalled on the FIFO
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        for file in [fifo, link, foreign, stale] { #expect(Files.kind(file) != nil, "\(file) was deleted") }
    }

    @Test("a service that daemonizes without pid_file fails to start and leaves nothing", arguments: modes)
    func daemonizingWithoutPidFile(mode: String) throws {
        let daemon = try daemon(cgroups: mode)
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("escape")
        let pidsFile = try defineForking(daemon, name, pidFile: false)
        let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
        #expect(grant.status == 503, "\(grant.text)")
        #expect(try daemon.kernelCount(name) == 0)
        // The daemon it forked may have got as far as noting itself: whatever it made is gone.
        #expect(eventually { recordedPIDs(pidsFile).allSatisfy { !isAlive($0) } }, "left: \(recordedPIDs(pidsFile).filter(isAlive))")
        #expect(try daemon.eventKinds(service: name).contains("service.start_failed"))
        #expect(pidsMentioning("\(daemon.stateDir)/\(name).svc.sock").isEmpty)
    }

    @Test("drain leaves nothing of a forking service", arguments: modes)
    func drainForking(mode: String) throws {
        let daemon = try daemon(cgroups: mode)
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("fdrain")
        let pidsFile = try defineForking(daemon, name, pidFile: true)
        #expect(try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]).status == 201)
        let pids = recordedPIDs(pidsFile)
        #expect(pids.count == 2 && pids.allSatisfy(isAlive))
        let stop = try runProcrefd(["stop", "--drain", "--state-dir", daemon.stateDir, "--timeout", "30"])
        #expect(stop.code == 0, "\(stop.stderr)")
        #expect(pids.allSatisfy { !isAlive($0) }, "left: \(pids.filter(isAlive))")
        #expect(daemon.cgroupRoot?.exists != true)
    }

    @Test("a service process spawned by a procrefd that died before recording it is found and stopped", arguments: modes)
    func strayAfterCrash(mode: String) throws {
        let first = try daemon(cgroups: mode, environment: ["PROCREFD_FAULT": "after-service-spawn"])
        defer { first.shutdown() }
        let name = first.uniqueName("stray")
        let socket = try first.defineSocketService(name)
        // procrefd kills itself between spawning the service and recording it.
        #expect((try? first.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000]))?.status != 201)
        #expect(eventually { !first.process.isRunning })
        // Once it listens, the service is one process (python's launcher shims are gone).
        #expect(eventually { FileManager.default.fileExists(atPath: socket) })
        let strays = pidsMentioning(socket)
        #expect(strays.count == 1)
        #expect(strays.allSatisfy(isAlive))

        let second = try DaemonHarness(stateDir: first.stateDir, extraArguments: ["--service-cgroups", mode])
        defer { second.shutdown() }
        second.adoptServiceName(name)
        #expect(strays.allSatisfy { !isAlive($0) }, "left: \(strays.filter(isAlive))")
        let stopped = try second.events(service: name).last { $0["kind"] as? String == "service.stopped" }
        #expect((stopped?["detail"] as? [String: Any])?["reason"] as? String == "stray")
        let grant = try second.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
        #expect(grant.status == 201, "\(grant.text)")
        #expect(try second.kernelCount(name) == 1)
    }
}

/// An orphan a service leaves is reparented to procrefd (a child subreaper), which reaps it
/// when it ends: no zombie piles up under the daemon.
@Suite("Orphans")
struct OrphanTests {
    @Test("a service's orphan becomes procrefd's child, and is reaped (on SIGCHLD) when it exits")
    func orphanReaped() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("orphan")
            let socketPath = "\(daemon.stateDir)/\(name).svc.sock"
            let pidFile = "\(daemon.stateDir)/\(name).orphan"
            // The subshell forks the orphan and exits at once; the orphan writes its pid,
            // outlives its parent for a moment, then exits.
            let start = ["sh", "-c", "( sh -c 'echo $$ > \(pidFile); exec sleep 0.5' & ); exec python3 \(testServiceScript) \(socketPath)"]
            _ = try daemon.defineSocketService(name, extra: ["start": start])
            let grant = try daemon.unix.send("POST", "/v1/services/\(name)/leases", json: ["ttl_ms": 60_000])
            #expect(grant.status == 201, "\(grant.text)")
            #expect(eventually { ((try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) != nil })
            let orphan = try #require(Int32((try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
            let daemonPID = try #require(try daemon.unix.get("/v1/daemon").json["pid"] as? Int)
            // Reparented to procrefd while it sleeps (or already gone: reaped, as below).
            let parent = ProcessStat.read(pid: orphan)?.parentPID
            #expect(parent == nil || parent == Int32(daemonPID), "parent \(String(describing: parent))")
            // Once it exits, procrefd reaps it: no zombie stays behind.
            #expect(eventually { ProcessStat.read(pid: orphan) == nil }, "\(String(describing: ProcessStat.read(pid: orphan)))")
            let id = try #require(grant.json["id"] as? String)
            #expect(try daemon.unix.send("DELETE", "/v1/leases/\(id)").status == 200)
        }
    }
}

extension ServiceTreeTests {
    @Test("a start's strays are stopped by a task: the service's loop answers meanwhile, and the spawn follows once they are gone")
    func straysStoppedOffTheLoop() throws {
        let daemon = try daemon(cgroups: "off")
        defer { daemon.shutdown() }
        let name = daemon.uniqueName("strays")
        try daemon.defineSocketService(name, extra: ["stop_timeout_ms": 3_000])
        // A process carrying the service's marker, left from no run procrefd knows of, that
        // ignores SIGTERM: the start must wait the stop timeout, then SIGKILL it.
        let stray = Process()
        stray.executableURL = URL(fileURLWithPath: "/bin/sh")
        stray.arguments = ["-c", "trap '' TERM; exec sleep 300"]
        stray.environment = ["PATH": "/usr/bin:/bin", "PROCREFD_SERVICE": "\(daemon.scope)/\(name)"]
        try stray.run()
        daemon.adopt(pid: stray.processIdentifier)
        let strayPID = stray.processIdentifier
        // Once sh has ignored SIGTERM and exec'd sleep (the signal disposition goes with it).
        #expect(eventually { (try? String(contentsOfFile: "/proc/\(strayPID)/comm", encoding: .utf8)) == "sleep\n" })

        let acquire = SlotsTests.PendingAcquire(daemon, name, body: ["ttl_ms": 60_000])
        #expect(eventually { (try? daemon.service(name)["state"] as? String) == "starting" })
        // The loop is free while the stray is being stopped: a restart is refused as busy at
        // once, before the stray's SIGKILL.
        let restart = try daemon.unix.send("POST", "/v1/services/\(name)/restart")
        #expect(restart.status == 409, "\(restart.text)")
        #expect(isAlive(strayPID), "the stray was already gone: the answer waited for its stop")

        let grant = try #require(acquire.result(timeout: 30))
        #expect(grant.status == 201, "\(grant.text)")
        #expect(!isAlive(strayPID))
        let kinds = try daemon.eventKinds(service: name)
        let strayStop = try #require(kinds.firstIndex(of: "service.stopped"))
        let starting = try #require(kinds.firstIndex(of: "service.starting"))
        #expect(strayStop < starting, "\(kinds)")
    }
}
