import ArgumentParser
import Daemon
import FoundationEssentials
import Glibc
import Lifecycle
import Posix

/// What the CLI can tell about a daemon without changing anything: the PID file, whether
/// that process is alive, and whether the socket answers.
struct DaemonProbe {
    let directory: StateDirectory
    let pid: Int32?
    let alive: Bool
    let answers: Bool

    init(_ directory: StateDirectory) throws(DaemonError) {
        self.directory = directory
        pid = try directory.readPID()
        alive = pid.map { ProcessIdentity.of(pid: $0)?.isAlive ?? false } ?? false
        answers = (try? Self.request(directory, "GET", "/v1/health", timeoutMs: 2_000).status) == 200
    }

    /// One HTTP request over the daemon's Unix socket.
    static func request(_ directory: StateDirectory, _ method: String, _ path: String, body: String = "", timeoutMs: Int)
        throws(SystemCallError) -> (status: Int, body: String)
    {
        let text = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let reply = String(decoding: try SocketExchange.exchange(.unix(path: directory.socket), request: Array(text.utf8), timeoutMs: timeoutMs), as: UTF8.self)
        let status = reply.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
        let body = reply.firstRange(of: "\r\n\r\n").map { String(reply[$0.upperBound...]) } ?? ""
        return (status, body)
    }
}

/// Exit codes shared by the control commands.
enum ControlExit {
    static let notRunning = ExitCode(3)
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tell whether procrefd runs on this state directory.",
        discussion: "Exit codes: 0 running and answering, 1 running but not answering (or a PID-file error), 3 not running.")

    @OptionGroup var location: StateLocation

    func run() throws {
        let probe: DaemonProbe
        do { probe = try DaemonProbe(location.directory) } catch {
            printError("procrefd: \(error)")
            throw ExitCode.failure
        }
        let socket: String
        switch Files.kind(probe.directory.socket) {
        case nil: socket = "absent"
        case .some(let kind) where !kind.isSocket: socket = "not a socket"
        default: socket = probe.answers ? "answers" : "does not answer"
        }
        print("state dir: \(probe.directory.path)")
        print("pid: \(probe.pid.map(String.init) ?? "none")\(probe.pid != nil && !probe.alive ? " (not running)" : "")")
        print("socket: \(socket)")
        if probe.alive && probe.answers { print("running"); return }
        if probe.alive { print("running but not answering"); throw ExitCode.failure }
        print("not running")
        throw ControlExit.notRunning
    }
}

struct Pid: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the running daemon's pid.",
        discussion: "Exit codes: 0 printed, 1 PID-file error, 3 not running.")

    @OptionGroup var location: StateLocation

    func run() throws {
        let directory = location.directory
        let pid: Int32?
        do { pid = try directory.readPID() } catch {
            printError("procrefd: \(error)")
            throw ExitCode.failure
        }
        guard let pid, ProcessIdentity.of(pid: pid)?.isAlive == true else {
            printError("procrefd: not running")
            throw ControlExit.notRunning
        }
        print(pid)
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop the running daemon and wait until it has exited.",
        discussion: "Exit codes: 0 stopped, 1 still running after --timeout (or an error), 3 not running.")

    @OptionGroup var location: StateLocation

    @Flag(help: "End every lease and stop every service, whatever the daemon's --on-exit.")
    var drain = false

    @Flag(help: "Leave leases and services running for the next procrefd, whatever the daemon's --on-exit.")
    var handoff = false

    @Option(help: "Seconds to wait for the daemon to exit.")
    var timeout: Double = 60

    func validate() throws {
        if drain && handoff { throw ValidationError("--drain and --handoff exclude each other") }
    }

    func run() throws {
        let directory = location.directory
        let pid: Int32?
        do { pid = try directory.readPID() } catch {
            printError("procrefd: \(error)")
            throw ExitCode.failure
        }
        guard let pid, let identity = ProcessIdentity.of(pid: pid), identity.isAlive else {
            printError("procrefd: not running")
            throw ControlExit.notRunning
        }
        let mode = drain ? #"{"mode":"drain"}"# : handoff ? #"{"mode":"handoff"}"# : ""
        let asked = (try? DaemonProbe.request(directory, "POST", "/v1/daemon/stop", body: mode, timeoutMs: 5_000).status) == 202
        if !asked {
            // Socket unusable: fall back to SIGTERM (the daemon's configured --on-exit applies).
            guard let process = try? PidFD(identity: identity) else { throw ControlExit.notRunning }
            do { try process.signal(SIGTERM) } catch {
                printError("procrefd: cannot signal \(pid): \(error)")
                throw ExitCode.failure
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while identity.isAlive {
            if Date() > deadline {
                printError("procrefd: pid \(pid) still running after \(timeout) s")
                throw ExitCode.failure
            }
            usleep(20_000)
        }
        print("stopped \(pid)")
    }
}
