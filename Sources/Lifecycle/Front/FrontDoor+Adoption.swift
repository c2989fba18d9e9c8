import AuditStore
import CPosixShims
import FoundationEssentials
import Glibc
import LifecycleModel
import Logging
import Posix
import Synchronization

/// A door that outlived the procrefd before this one: found at start-up, taken back when it
/// comes to the rendezvous (with its listening sockets), or told to retire.
extension FrontDoor {
    /// Doors an earlier procrefd started on the set `semid` that still run.
    static func leftBehind(semid: Int32) -> [ProcessIdentity] {
        ProcessScan.now().running(as: geteuid()) { $0.count >= 5 && $0[0].hasSuffix("/procref-door") && $0[1] == String(semid) }
    }

    /// A door this procrefd did not start: its exit tells `owner`'s machine, which reads
    /// the count.
    static func watchForeignExit(of process: PidFD, notifying owner: ServiceExecutor?, context: LifecycleContext) {
        try? context.loop.watchExit(of: process, reap: false) { [weak owner] _ in
            owner?.send(.lastReferenceGone(reason: "front_exited", by: Principal.procrefd, nil))
        }
    }

    /// A door the procrefd before this one started came back to the rendezvous (`pid`, by the
    /// kernel's word, as procrefd's user). Takes `control` either way: the door becomes this
    /// one's, with its listening sockets and open connections, or, when a door already
    /// serves or the set is another, it is told to retire.
    func adopt(control: Int32, pid: Int32, semid: Int32) {
        let process = ProcessIdentity.of(pid: pid).flatMap { try? PidFD(identity: $0) }
        let (taken, owner) = state.withLock { state -> (Bool, ServiceExecutor?) in
            guard let process, !state.closed, state.process == nil, state.awaitingAdoption, semid == state.semid else { return (false, state.owner) }
            Self.begin(&state, process: process, control: control)
            (state.awaitingAdoption, state.adopted) = (false, true)
            return (true, state.owner)
        }
        guard taken, let process else { return Self.retire(control: control, process: process, notifying: owner, context: context) }
        context.logger.notice("front door of \(service) (pid \(pid)) taken back from the procrefd before")
        do { try context.loop.watchExit(of: process, reap: false) { [weak self] _ in self?.exited(process) } } catch {
            try? process.signal(SIGKILL)
        }
        serve()
    }

    /// Tells a door that is not wanted to retire (accept nothing new, finish its open
    /// connections); its exit tells `owner`, whose count it held.
    static func retire(control: Int32, process: PidFD?, notifying owner: ServiceExecutor?, context: LifecycleContext) {
        _ = Descriptor.send(control, Array(PROCREF_DOOR_RETIRE.utf8), passing: -1)
        Descriptor.close(control)
        if let process { watchForeignExit(of: process, notifying: owner, context: context) }
    }

    /// A listening socket an adopted door brought back: procrefd's copy again.
    func takeBack(listener fd: Int32, key: String) {
        let kept = state.withLock { !$0.closed && $0.listeners.take(fd, key: key) }
        if !kept { Descriptor.close(fd) }
    }

    /// An adopted door's addresses that the definition has and it did not bring are bound
    /// and given to it.
    func completeAdoption() {
        let result = state.withLock { state -> (Int32, [(FrontAddress, Int32)], LifecycleError?) in
            do throws(LifecycleError) {
                let added = try state.listeners.bindMissing()
                return (state.control, added.compactMap { address in state.listeners.sockets[address].map { (address, $0) } }, nil)
            } catch {
                return (state.control, [], error)
            }
        }
        let (control, added, failure) = result
        if let failure { context.logger.error("front door of \(service): \(failure)") }
        for (address, fd) in added { Self.give(listener: fd, at: address, on: control) }
    }
}
