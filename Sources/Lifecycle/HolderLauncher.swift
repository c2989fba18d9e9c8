import Glibc
import Posix

/// Starts `procref-holder` processes, one per lease.
struct HolderLauncher: Sendable {
    let executable: String
    let spawner: Spawner
    /// How long a holder may take to report that it holds its reference.
    let reportTimeoutMs = 5_000

    enum Failure: Error {
        case clientGone
        case other(String)
    }

    /// Spawns a holder in its own session and returns once it reports `acquired`, that is once
    /// the kernel count includes it. On failure nothing is left running.
    func launch(semaphoreID: Int32, ttlMs: Int64?, clientPID: Int32?) throws(Failure) -> PidFD {
        let pipe: PipeEnds
        do { pipe = try PipeEnds() } catch { throw .other(error.description) }
        defer { Descriptor.close(pipe.readEnd) }
        var options = Spawner.Options()
        options.newSession = true
        options.passedDescriptor = pipe.writeEnd
        let identity: ProcessIdentity
        do {
            identity = try spawner.spawn(
                arguments: [executable, String(semaphoreID), String(ttlMs ?? 0), String(clientPID ?? 0)],
                environment: [:], options: options)
        } catch {
            Descriptor.close(pipe.writeEnd)
            throw .other("cannot start \(executable): \(error)")
        }
        Descriptor.close(pipe.writeEnd)
        let process: PidFD
        do { process = try PidFD(child: identity) } catch {
            throw .other("holder exited at once: \(error)")
        }
        let report = Descriptor.readLine(pipe.readEnd, timeoutMs: reportTimeoutMs)
        if report == "acquired" { return process }
        try? process.signal(SIGKILL)
        let status = process.waitForExit(timeoutMs: 1_000)
        if let report, report.hasPrefix("error client") { throw .clientGone }
        throw .other("holder reported \(report.map { $0.debugDescription } ?? "nothing") (\(status.map(\.description) ?? "still running"))")
    }
}
