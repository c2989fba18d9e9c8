import Logging
import Posix
import LifecycleModel
import Synchronization

/// The service's main process: which one it is, and its exit told to the machine (before a
/// teardown's end, see `mainExited`).
extension ServiceExecutor {
    /// Makes `process` the main process and watches its exit.
    func setMain(_ process: PidFD) {
        shared.withLock {
            $0.main = process
            $0.mainEnded = false
            $0.mainExit = nil
        }
        do {
            try context.loop.watchExit(of: process) { [weak self] status in self?.mainExited(process, status) }
        } catch {
            context.logger.error("cannot watch service \(name): \(error)")
        }
    }

    private func mainExited(_ process: PidFD, _ status: ExitStatus?) {
        let reported = shared.withLock { shared -> [CheckedContinuation<Void, Never>] in
            guard shared.main === process else { return [] }
            shared.mainEnded = true
            shared.mainExit = status
            // Queued under the lock a teardown reads `mainEnded` with, so that the machine
            // hears of this exit before the teardown's `teardownFinished`, never during the
            // next start.
            send(.mainExited(MainExit(status)))
            defer { shared.exitReportWaiters = [:] }
            return Array(shared.exitReportWaiters.values)
        }
        for waiter in reported { waiter.resume() }
    }

    /// Takes over a main process left running by an earlier procrefd (not our child: its
    /// exit status is unknown).
    func adopt(_ process: PidFD) {
        setMain(process)
        send(.adopted)
    }
}
