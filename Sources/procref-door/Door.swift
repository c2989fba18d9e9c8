import CPosixShims
import Glibc

/// procref-door: a service's front door. Clients connect to its front addresses; every open
/// connection is one kernel reference on the service's semaphore set.
///
/// Usage: `procref-door SEMID UPSTREAM MAX_PENDING PENDING_TIMEOUT_MS RENDEZVOUS SERVICE AUDIT` with
/// descriptor 3 a SOCK_SEQPACKET socket to procrefd (see `procref_door.h` for its messages).
/// UPSTREAM is `HOST:PORT` (`[V6]:PORT`) or `unix:PATH`, where the service listens.
/// RENDEZVOUS is the socket where a later procrefd takes the door back (`-`: none). AUDIT is
/// `connections` (each connection's open and close is reported) or `transitions`.
///
/// - Each accepted connection adds `+1 | SEM_UNDO` to semaphore 0 of SEMID, and gives it back
///   when it closes. If the door dies, the kernel takes back all of them at once, and its
///   connections die with it: the count stays true.
/// - Until procrefd says the service is ready, connections are held (at most MAX_PENDING, each
///   at most PENDING_TIMEOUT_MS), and procrefd hears `need`: it starts the service. Only then
///   does the door connect upstream. An upstream that refuses means the service is not there
///   after all: the connection waits again and procrefd hears `need` again.
/// - Bytes go both ways with splice(2) through a pipe per direction, in one epoll loop, no
///   thread per connection; an end-of-file is passed on as a half-close.
/// - When procrefd goes away (end of file on descriptor 3), the door goes on: open connections
///   flow, new ones to a ready service are forwarded, and new ones to a stopped service wait
///   (within PENDING_TIMEOUT_MS). Every 250 ms it tries RENDEZVOUS; the procrefd found there
///   (same user, or root) is told `adopt` and given the listening sockets back, and the door
///   is its again. Once its semaphore set is gone (procrefd drained, or the set was removed),
///   nobody can take it back: it closes everything and exits.
/// - Told `retire` (or, without a rendezvous, at the end of file), it stops accepting, closes
///   what waits, lets the open connections finish, and exits.
@main
struct Door {
    static func main() {
        let arguments = CommandLine.arguments
        guard arguments.count == 8,
            let semid = Int32(arguments[1]),
            let upstream = Upstream(arguments[2]),
            let maxPending = Int(arguments[3]), maxPending > 0,
            let pendingTimeoutMs = Int64(arguments[4]), pendingTimeoutMs > 0
        else {
            let usage = Array("usage: procref-door SEMID HOST:PORT|unix:PATH MAX_PENDING PENDING_TIMEOUT_MS RENDEZVOUS|- SERVICE connections|transitions (descriptor 3: procrefd)\n".utf8)
            _ = procref_write(2, usage, usage.count)
            exit(2)
        }
        signal(SIGPIPE, SIG_IGN)
        var door = DoorLoop(
            control: 3, semid: semid, upstream: upstream, maxPending: maxPending, pendingTimeoutMs: pendingTimeoutMs,
            rendezvous: arguments[5] == "-" ? nil : arguments[5], service: arguments[6], auditConnections: arguments[7] == "connections")
        exit(door.run())
    }
}

/// The door's event loop: listeners, connections and the control socket on one epoll set.
struct DoorLoop {
    /// The socket to procrefd; -1 while procrefd is away.
    var control: Int32
    let semid: Int32
    let upstream: Upstream
    let maxPending: Int
    let pendingTimeoutMs: Int64
    /// Where a later procrefd takes the door back, and the service it names there.
    let rendezvous: String?
    let service: String
    /// Each connection's open and close is reported, for the audit log.
    let auditConnections: Bool

    let epoll = procref_epoll_create()
    /// Empty pipes of closed connections, kept for new ones.
    var freePipes: [(read: Int32, write: Int32)] = []
    static let maxFreePipes = 64
    /// Listening sockets, with procrefd's name for each (given back when rejoining).
    var listeners: [(fd: Int32, key: String)] = []
    var connections: [Int: Connection] = [:]
    /// Connections waiting for a start (a subset of `connections`), oldest first by id.
    var pending: Set<Int> = []
    var nextID = 1
    /// procrefd said the service is ready, and no upstream has refused since.
    var ready = false
    /// `need` was sent and not yet answered.
    var needSent = false
    /// Told to retire: accept nothing new, exit once the last connection closes.
    var retiring = false
    /// When the rendezvous was last tried, while procrefd is away.
    var lastRejoinAttempt: Int64 = 0
    /// Connections accepted so far, bytes forwarded each way, and what the last report said.
    var accepted = 0
    var bytes = (up: 0, down: 0)
    var reported = (open: -1, accepted: 0, pending: -1)
    var reportedBytes = (up: 0, down: 0)
    var reportedAtMs: Int64 = 0
    static let rejoinIntervalMs: Int64 = 250
    /// Changes that do not take the open or waiting connections to or from none are
    /// reported at most this often: procrefd is not woken per connection.
    static let reportIntervalMs: Int64 = 100

    // epoll tokens: the kind in the low two bits, the connection's id above them.
    static let controlToken: UInt64 = 0
    static let listenerKind: UInt64 = 1, clientKind: UInt64 = 2, upstreamKind: UInt64 = 3

    init(
        control: Int32, semid: Int32, upstream: Upstream, maxPending: Int, pendingTimeoutMs: Int64, rendezvous: String?, service: String,
        auditConnections: Bool
    ) {
        self.auditConnections = auditConnections
        self.control = control
        self.semid = semid
        self.upstream = upstream
        self.maxPending = maxPending
        self.pendingTimeoutMs = pendingTimeoutMs
        self.rendezvous = rendezvous
        self.service = service
    }

    var procrefdAway: Bool { control < 0 }

    mutating func run() -> Int32 {
        guard epoll >= 0, procref_door_epoll_set(epoll, control, 1, 1, 0, Self.controlToken) == 0 else { return 1 }
        var tokens = [UInt64](repeating: 0, count: 128)
        var events = [UInt32](repeating: 0, count: 128)
        while !(retiring && connections.isEmpty) {
            var timeout: Int32 = pending.isEmpty ? -1 : 100
            if procrefdAway, !retiring { timeout = timeout < 0 ? Int32(Self.rejoinIntervalMs) : min(timeout, Int32(Self.rejoinIntervalMs)) }
            if !procrefdAway, unreported { timeout = timeout < 0 ? Int32(Self.reportIntervalMs) : min(timeout, Int32(Self.reportIntervalMs)) }
            let n = procref_door_epoll_wait(epoll, &tokens, &events, 128, timeout)
            guard n >= 0 else { return 1 }
            for index in 0..<Int(n) {
                let token = tokens[index], event = events[index]
                switch token & 3 {
                case Self.controlToken where token == 0: readControl()
                case Self.listenerKind: accept(on: Int32(truncatingIfNeeded: token >> 2))
                case Self.clientKind: clientEvent(Int(token >> 2), event)
                case Self.upstreamKind: upstreamEvent(Int(token >> 2), event)
                default: break
                }
            }
            expirePending()
            if procrefdAway, !retiring, !rejoinIfDue() { break }
            report()
        }
        return 0
    }

    // MARK: Connections

    mutating func accept(on listener: Int32) {
        while true {
            let client = procref_door_accept(listener)
            guard client >= 0 else { return }  // EAGAIN, or a connection that went away
            guard !retiring, ready || pending.count < maxPending, procref_door_semop(semid, 1) == 0 else {
                Glibc.close(client)
                continue
            }
            let id = nextID
            nextID += 1
            accepted += 1
            connections[id] = Connection(client: client, acceptedAt: procref_monotonic_ms())
            pending.insert(id)
            if auditConnections { send("\(PROCREF_DOOR_OPENED) \(id) \(Self.peer(of: client))") }
            if ready { connectUpstream(id) } else { askForStart() }
        }
    }

    mutating func connectUpstream(_ id: Int) {
        guard var connection = connections[id] else { return }
        let fd = upstream.beginConnect()
        guard fd >= 0 else { return notThere(id) }
        connection.upstream = fd
        connection.upstreamWatch = 2
        connection.phase = .connecting
        connections[id] = connection
        pending.remove(id)
        _ = procref_door_epoll_set(epoll, fd, 1, 0, 1, UInt64(id) << 2 | Self.upstreamKind)
    }

    /// The upstream refused: the service is not (or no longer) there. The connection waits
    /// for a start again.
    mutating func notThere(_ id: Int) {
        guard var connection = connections[id] else { return }
        if connection.upstream >= 0 {
            _ = procref_epoll_remove(epoll, connection.upstream)
            Glibc.close(connection.upstream)
            connection.upstream = -1
        }
        connection.phase = .pending
        connections[id] = connection
        pending.insert(id)
        ready = false
        askForStart()
    }

    mutating func upstreamEvent(_ id: Int, _ event: UInt32) {
        guard let connection = connections[id] else { return }
        if connection.phase == .connecting {
            guard procref_connect_result(connection.upstream) == 0 else { return notThere(id) }
            return startForwarding(id)
        }
        // Readable: bytes toward the client; writable: room for bytes toward upstream.
        pump(id, up: event & 6 != 0, down: event & 5 != 0)
        // Hung up both ways: once its bytes toward the client are out, nothing more can move.
        if event & 4 != 0, let after = connections[id], after.toClient.ended { close(id) }
    }

    mutating func clientEvent(_ id: Int, _ event: UInt32) {
        guard connections[id] != nil else { return }
        pump(id, up: event & 5 != 0, down: event & 6 != 0)
        if event & 4 != 0, let after = connections[id], after.toUpstream.ended { close(id) }
    }

    mutating func startForwarding(_ id: Int) {
        guard var connection = connections[id] else { return }
        guard let up = takePipe() else { return close(id) }
        guard let down = takePipe() else {
            Self.closePipe(up)
            return close(id)
        }
        (connection.toUpstream.pipe, connection.toClient.pipe) = (up, down)
        connection.phase = .forwarding
        connection.clientWatch = 1
        connections[id] = connection
        _ = procref_door_epoll_set(epoll, connection.client, 1, 1, 0, UInt64(id) << 2 | Self.clientKind)
        pump(id, up: true, down: true)
    }

    /// Moves what the event lets move (`up`: toward upstream, `down`: toward the client),
    /// then watches for what each direction waits on.
    mutating func pump(_ id: Int, up: Bool, down: Bool) {
        guard var connection = connections[id], connection.phase == .forwarding else { return }
        let before = connection.bytes
        let failedUp = up && !Self.move(&connection.toUpstream, from: connection.client, to: connection.upstream, counting: &connection.bytes.up)
        let failedDown = down && !Self.move(&connection.toClient, from: connection.upstream, to: connection.client, counting: &connection.bytes.down)
        bytes.up += connection.bytes.up - before.up
        bytes.down += connection.bytes.down - before.down
        if failedUp || failedDown || (connection.toUpstream.closed && connection.toClient.closed) {
            connections[id] = connection
            return close(id)
        }
        // A descriptor is read for its direction while that pipe is empty, and written while
        // the other direction's pipe holds bytes.
        let client = connection.toUpstream.wantsRead | connection.toClient.wantsWrite
        let upstream = connection.toClient.wantsRead | connection.toUpstream.wantsWrite
        if client != connection.clientWatch {
            _ = procref_door_epoll_set(epoll, connection.client, 0, Int32(client & 1), Int32(client >> 1), UInt64(id) << 2 | Self.clientKind)
            connection.clientWatch = client
        }
        if upstream != connection.upstreamWatch {
            _ = procref_door_epoll_set(epoll, connection.upstream, 0, Int32(upstream & 1), Int32(upstream >> 1), UInt64(id) << 2 | Self.upstreamKind)
            connection.upstreamWatch = upstream
        }
        connections[id] = connection
    }

    /// Where a read lands before it is written on: the loop is one thread, moving one
    /// direction at a time.
    nonisolated(unsafe) private static let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 32 << 10, alignment: 16)

    /// One direction, for one readiness event: writes out what the pipe holds, then reads
    /// once and writes that out (level-triggered epoll reports what is left), adding what it
    /// wrote to `counted`. False on an error (the connection is closed).
    ///
    /// A read goes through memory (recv, then send), which for request-sized data costs
    /// less than splicing into the pipe and out again; what the destination cannot take
    /// yet waits in the pipe, and leaves it by splice.
    static func move(_ flow: inout Flow, from: Int32, to: Int32, counting counted: inout Int) -> Bool {
        var read = false
        while !flow.closed {
            if flow.buffered > 0 {
                let n = procref_door_splice(flow.pipe.read, to, flow.buffered)
                if n < 0 { return errno == EAGAIN }
                flow.buffered -= n
                counted += n
                if flow.buffered > 0 { continue }
            }
            if flow.ended {
                _ = procref_door_shutdown_write(to)
                flow.closed = true
                return true
            }
            if read { return true }
            read = true
            let n = recv(from, scratch.baseAddress, scratch.count, Int32(MSG_DONTWAIT))
            if n < 0 { return errno == EAGAIN || errno == EINTR }
            if n == 0 {
                flow.ended = true
                continue
            }
            var sent = 0
            while sent < n {
                let m = Glibc.send(to, scratch.baseAddress! + sent, n - sent, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                if m < 0 {
                    if errno == EAGAIN { break }
                    if errno == EINTR { continue }
                    return false
                }
                sent += m
            }
            counted += sent
            guard sent < n else { continue }
            // The rest waits in the (empty) pipe, which holds more than one read.
            let rest = n - sent
            guard Glibc.write(flow.pipe.write, scratch.baseAddress! + sent, rest) == rest else { return false }
            flow.buffered = rest
        }
        return true
    }

    mutating func close(_ id: Int) {
        guard let connection = connections.removeValue(forKey: id) else { return }
        pending.remove(id)
        for fd in [connection.client, connection.upstream] where fd >= 0 {
            _ = procref_epoll_remove(epoll, fd)
            Glibc.close(fd)
        }
        for flow in [connection.toUpstream, connection.toClient] where flow.pipe.read >= 0 { givePipeBack(flow) }
        _ = procref_door_semop(semid, -1)
        if auditConnections {
            let openMs = procref_monotonic_ms() - connection.acceptedAt
            send("\(PROCREF_DOOR_CLOSED) \(id) \(connection.bytes.up) \(connection.bytes.down) \(openMs)")
        }
    }

    /// Who connected, for the audit log.
    static func peer(of fd: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 80)
        let length = procref_door_peer_text(fd, &buffer, buffer.count)
        guard length > 0 else { return "unknown" }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// An empty pipe, from those closed connections left, else a new one.
    mutating func takePipe() -> (read: Int32, write: Int32)? {
        if let pipe = freePipes.popLast() { return pipe }
        var ends: [Int32] = [-1, -1]
        return procref_door_pipe(&ends) == 0 ? (ends[0], ends[1]) : nil
    }

    /// Keeps a closed connection's pipe for the next one when it is empty (two pipe2 and
    /// four close calls fewer per connection), else closes it.
    mutating func givePipeBack(_ flow: Flow) {
        guard flow.buffered == 0, freePipes.count < Self.maxFreePipes else { return Self.closePipe(flow.pipe) }
        freePipes.append(flow.pipe)
    }

    static func closePipe(_ pipe: (read: Int32, write: Int32)) {
        Glibc.close(pipe.read)
        Glibc.close(pipe.write)
    }

    /// Connections that waited past their bound for a start are closed.
    mutating func expirePending() {
        let now = procref_monotonic_ms()
        for id in pending where connections[id].map({ now - $0.acceptedAt >= pendingTimeoutMs }) ?? true { close(id) }
    }
}
