import Foundation
import Glibc
import Posix
import Testing

@Suite("Socket ownership")
struct SocketOwnershipTests {
    /// The inode behind one of this process's descriptors ("socket:[N]").
    func inode(of fd: Int32) -> UInt64? {
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? ""
        guard target.hasPrefix("socket:[") else { return nil }
        return UInt64(target.dropFirst(8).dropLast())
    }

    @Test("the kernel names this process's TCP listener, and this process as holding it; a connected socket on the port is not a listener")
    func tcpListener() throws {
        var (listener, port) = try Listener.tcp(host: "127.0.0.1", port: 0)
        defer { Descriptor.close(listener) }
        let expected = try #require(inode(of: listener))
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Descriptor.close(client) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        let found = SocketOwnership.listeningInodes(tcpPort: Int(port))
        #expect(found == [expected])
        #expect(SocketOwnership.process(getpid(), holdsAnyOf: found))
        Descriptor.close(listener)
        listener = -1
        #expect(SocketOwnership.listeningInodes(tcpPort: Int(port)).isEmpty)
    }
}
