import CPosixShims
import Glibc
import Logging
import Posix
import Synchronization

/// The socket where front doors that outlived their procrefd come back (a crash, or a
/// hand-off): each says `adopt SEMID SERVICE` and brings its listening sockets, and the
/// service's `FrontDoor` takes it back. Mode 0600 in the state dir, and only procrefd's own
/// user is heard (SO_PEERCRED): nobody else can hand procrefd a door.
final class DoorRendezvous: Sendable {
    let path: String
    private let listener: Int32
    private let context: LifecycleContext
    private let lookup: @Sendable (String) -> ServiceExecutor?
    private let watch = Mutex<IOLoop.WatchID?>(nil)
    private let closed = Atomic<Bool>(false)
    /// How long a door has to say who it is once connected.
    static let greetingTimeoutMs = 1_000

    /// Listens at `path` (a socket of this user left there by an earlier run is replaced;
    /// any other file is not touched); nil, logged, when it cannot.
    init?(path: String, context: LifecycleContext, lookup: @escaping @Sendable (String) -> ServiceExecutor?) {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK, info.st_uid == geteuid() else {
                context.logger.error("front doors cannot come back: \(path) is not a socket of procrefd's user")
                return nil
            }
            unlink(path)
        }
        do { listener = try MessageSocket.listen(path: path, mode: 0o600) } catch {
            context.logger.error("front doors cannot come back: \(error)")
            return nil
        }
        (self.path, self.context, self.lookup) = (path, context, lookup)
        arm()
    }

    private func arm() {
        guard !closed.load(ordering: .relaxed) else { return }
        let id = context.loop.watch(.readable, on: listener) { [weak self] in self?.acceptWaiting() }
        watch.withLock { $0 = id }
    }

    private func acceptWaiting() {
        while let fd = MessageSocket.accept(listener) {
            guard let peer = MessageSocket.peer(fd), peer.uid == geteuid() else {
                Descriptor.close(fd)
                continue
            }
            Task { await greet(fd, pid: peer.pid) }
        }
        arm()
    }

    /// Reads the door's first message alone: the listening sockets after it are for the
    /// `FrontDoor` that takes the door.
    private func greet(_ fd: Int32, pid: Int32) async {
        guard await context.loop.wait(for: .readable, on: fd, timeoutMs: Self.greetingTimeoutMs),
            case .message(let bytes, let passed) = MessageSocket.receive(fd)
        else { return Descriptor.close(fd) }
        Descriptor.close(passed)
        let fields = String(decoding: bytes, as: UTF8.self).split(separator: " ")
        guard fields.count == 3, fields[0] == PROCREF_DOOR_ADOPT, let semid = Int32(fields[1]) else { return Descriptor.close(fd) }
        let service = lookup(String(fields[2]))
        if let door = service?.front.withLock({ $0 }) as? FrontDoor { return door.adopt(control: fd, pid: pid, semid: semid) }
        // The service is gone, or has no front now: the door finishes its connections.
        let process = ProcessIdentity.of(pid: pid).flatMap { try? PidFD(identity: $0) }
        FrontDoor.retire(control: fd, process: process, notifying: service, context: context)
    }

    /// Stops listening and removes the socket (drain, hand-off): doors wait for the next
    /// procrefd.
    func close() {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        if let id = watch.withLock({ $0 }) { context.loop.unwatch(id) }
        Descriptor.close(listener)
        unlink(path)
    }
}
