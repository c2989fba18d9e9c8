import Posix
import Synchronization

/// One pooled holder process: its pidfd (watched for its exit once, for its whole life), the
/// socket procrefd gives it leases on, and the lease it holds now. A holder serves one lease
/// at a time; after a release it may serve another (see `HolderPool.recycle`).
final class HolderProcess: Sendable {
    let process: PidFD
    private struct State {
        var socket: Int32
        var lease: Lease?
        /// Set once the process exited (the inner nil: not our child).
        var exit: ExitStatus??
        var served = 0
        /// A release is reading the socket: an exit must not close it under the reader.
        var exchanging = false
    }
    private let state: Mutex<State>

    init(process: PidFD, socket: Int32) {
        self.process = process
        state = Mutex(State(socket: socket))
    }

    /// The socket, while open.
    var socket: Int32? { state.withLock { $0.socket >= 0 ? $0.socket : nil } }

    /// Writes `bytes` (a short line) on its socket, under the lock `retire` closes it with, so
    /// the write can never reach a descriptor number reused meanwhile. False when closed.
    func send(_ bytes: [UInt8], passing fd: Int32? = nil) -> Bool {
        state.withLock { state in
            guard state.socket >= 0 else { return false }
            guard let fd else { return Descriptor.writeAll(state.socket, bytes) }
            return Descriptor.send(state.socket, bytes, passing: fd)
        }
    }

    /// Writes `bytes` and returns the socket to read the answer on, which stays open (even
    /// if the process exits) until `endExchange`. nil when the socket is closed.
    func beginExchange(_ bytes: [UInt8]) -> Int32? {
        state.withLock { state in
            guard state.socket >= 0, Descriptor.writeAll(state.socket, bytes) else { return nil }
            state.exchanging = true
            return state.socket
        }
    }

    /// The answer is read: a holder that exited meanwhile has its socket closed now.
    func endExchange() {
        state.withLock { state in
            state.exchanging = false
            if state.exit != nil { Self.close(&state) }
        }
    }

    /// Closes the socket of a holder that exited, unless an exchange still reads it.
    func retireAfterExit() {
        state.withLock { state in if !state.exchanging { Self.close(&state) } }
    }

    var hasExited: Bool { state.withLock { $0.exit != nil } }

    /// Leases it has taken so far.
    var served: Int { state.withLock { $0.served } }

    /// Makes `lease` the one it holds. An exit that came first is passed on at once (the
    /// lease is still being granted, so it records the status for the grant to handle).
    func attach(_ lease: Lease) {
        let exit = state.withLock { state -> ExitStatus?? in
            state.lease = lease
            state.served += 1
            if state.exit != nil { Self.close(&state) }
            return state.exit
        }
        if let exit { _ = lease.holderExited(exit) }
    }

    /// It holds nothing any more (its lease was released).
    func detach() { state.withLock { $0.lease = nil } }

    /// Called once when the process exits: returns the lease it held, if any. The socket
    /// stays open until `retire`: a launch may still be reading it (see `HolderPool`).
    func exited(_ status: ExitStatus?) -> Lease? {
        state.withLock { state in
            state.exit = .some(status)
            return state.lease
        }
    }

    /// Closes its socket (an idle holder then exits); idempotent.
    func retire() { state.withLock { Self.close(&$0) } }

    private static func close(_ state: inout State) {
        Descriptor.close(state.socket)
        state.socket = -1
    }
}
