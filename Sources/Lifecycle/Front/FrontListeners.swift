import CPosixShims
import Glibc
import Posix

/// A front's listening sockets as procrefd holds them, one per address of the definition.
/// procrefd keeps them whatever runs behind (a door that is replaced, a service that stops),
/// so the backlog survives and no client is refused.
struct FrontListeners: Sendable {
    /// The definition's addresses.
    let addresses: [FrontAddress]
    private(set) var sockets: [FrontAddress: Int32] = [:]
    /// Each address as bound (its port when the definition says 0).
    private(set) var bound: [FrontAddress: FrontAddress] = [:]

    init(_ addresses: [FrontAddress]) { self.addresses = addresses }

    /// Shares (a copy of each descriptor) the sockets of `other` for addresses both have.
    mutating func share(_ other: FrontListeners) {
        for (address, fd) in other.sockets where addresses.contains(address) && sockets[address] == nil {
            sockets[address] = procref_dup_cloexec(fd)
            bound[address] = other.bound[address] ?? address
        }
    }

    /// Binds each address that has none yet, and returns those it bound; on a failure, what
    /// this call bound is closed again.
    @discardableResult
    mutating func bindMissing() throws(LifecycleError) -> [FrontAddress] {
        var added: [FrontAddress] = []
        for address in addresses where sockets[address] == nil {
            do { (sockets[address], bound[address]) = try address.listen() } catch {
                for address in added { Descriptor.close(sockets.removeValue(forKey: address) ?? -1) }
                throw error
            }
            added.append(address)
        }
        return added
    }

    /// A socket handed back (by a door that outlived its procrefd) under `key`, the address
    /// as the definition names it. False (the caller closes it) when no address of the
    /// definition wants it.
    mutating func take(_ fd: Int32, key: String) -> Bool {
        guard fd >= 0, let address = FrontAddress(key), addresses.contains(address), sockets[address] == nil else { return false }
        sockets[address] = fd
        if case .tcp(let host, _) = address, let port = MessageSocket.boundPort(fd) {
            bound[address] = .tcp(host: host, port: port)
        } else {
            bound[address] = address
        }
        return true
    }

    /// The addresses clients connect to, as bound.
    var descriptions: [String] { bound.values.map(\.description).sorted() }

    /// Gives up the sockets: the caller closes them (see `close(unlink:)`).
    mutating func takeAll() -> [FrontAddress: Int32] {
        defer { (sockets, bound) = ([:], [:]) }
        return sockets
    }

    /// Closes `sockets`, and with `unlink` removes their Unix socket paths.
    static func close(_ sockets: [FrontAddress: Int32], unlink: Bool) {
        for (address, fd) in sockets {
            Descriptor.close(fd)
            if unlink, case .unix(let path) = address { Glibc.unlink(path) }
        }
    }
}
