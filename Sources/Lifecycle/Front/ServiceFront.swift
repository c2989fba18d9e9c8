import LifecycleModel

/// What stands in front of a service that names `front` addresses: a `FrontDoor` (the
/// default; `procref-door` forwards and counts each connection) or a `SocketActivation`
/// (`front_mode = "activate"`: the service itself gets the listening sockets at start).
protocol ServiceFront: AnyObject, Sendable {
    /// The addresses clients connect to, as bound.
    var addresses: [String] { get }
    /// Open connections, where they can be counted (nil with socket activation).
    var connections: Int? { get }
    /// The listening sockets, for a front that replaces this one to share.
    var listeners: FrontListeners { get }
    /// Starts serving for `owner`.
    func open(for owner: ServiceExecutor)
    /// The service's state changed (published).
    func serviceChanged(to state: ServiceState)
    /// The service's semaphore set was replaced.
    func renew(semid: Int32)
    /// Hand-off: what runs goes on without this procrefd.
    func release()
    /// Ends the front. `stopConnections`: what is open through it ends too, and Unix socket
    /// paths are removed (`unlink`); otherwise open connections are left to finish.
    func close(stopConnections: Bool, unlink: Bool)
}

extension ServiceFront {
    func close(stopConnections: Bool) { close(stopConnections: stopConnections, unlink: true) }
}
