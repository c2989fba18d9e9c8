import Foundation
import ProcrefdClient
import Testing

/// The tests' raw client and the CLI's client behind one protocol (`APIRequester`): a check
/// written once runs through either, over either listener.
@Suite("One client protocol")
struct ClientProtocolTests {
    /// A lease taken and released through `client`; its grant's count and its release's.
    func leaseCycle(_ client: some APIRequester, service: String) throws -> (granted: Int?, released: Int?) {
        let grant = try client.send("POST", "/v1/services/\(service)/leases", json: ["ttl_ms": 60_000, "holder": "protocol"], headers: [:])
        #expect(grant.status == 201, "\(grant.text)")
        let id = try #require(grant.json["id"] as? String)
        let release = try client.send("DELETE", "/v1/leases/\(id)", json: nil, headers: [:])
        #expect(release.status == 200, "\(release.text)")
        let unknown = try client.send("DELETE", "/v1/leases/\(id)", json: nil, headers: [:])
        #expect(unknown.status == 404 && unknown.contentType == "application/problem+json")
        return (grant.json["count"] as? Int, release.json["count"] as? Int)
    }

    @Test("one lease cycle, written once, through the tests' client and the CLI's, on the socket and over TCP")
    func bothClients() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("protocol")
            try daemon.defineSocketService(name, extra: ["linger_ms": 60_000])
            let socket = "\(daemon.stateDir)/procrefd.sock"
            let clients: [any APIRequester] = [
                daemon.unix, daemon.tcp,
                APIClient(endpoint: .unix(path: socket), token: nil),
                APIClient(endpoint: .tcp(host: "127.0.0.1", port: Int(daemon.port)), token: daemon.token),
            ]
            for client in clients {
                let counts = try leaseCycle(client, service: name)
                #expect(counts.granted == 1 && counts.released == 0, "\(type(of: client)): \(counts)")
            }
            let kinds = try daemon.eventKinds(service: name)
            #expect(kinds.filter { $0 == "lease.acquired" }.count == clients.count)
            #expect(kinds.filter { $0 == "lease.released" }.count == clients.count)
            // The same read through the protocol's `get`, from both kinds of client.
            #expect(try daemon.unix.get("/v1/services/\(name)").json["name"] as? String == name)
            #expect(try APIClient(endpoint: .unix(path: socket), token: nil).get("/v1/services/\(name)").json["name"] as? String == name)
        }
    }
}
