import Foundation
import Testing

/// Bad requests get a clear problem+json error and change nothing: not the audit log, not
/// the kernel count.
@Suite("Bad input")
struct BadInputTests {
    @Test("malformed JSON, bad names, unknown services, bad fields, missing token")
    func rejectedWithoutStateChange() throws {
        try withDaemon { daemon in
            let name = daemon.uniqueName("strict")
            _ = try daemon.defineSocketService(name)
            let eventsBefore = try daemon.events().count
            let countBefore = try daemon.kernelCount(name)

            let cases: [(TestHTTPClient, String, String, Any?, String?, Int)] = [
                (daemon.unix, "POST", "/v1/services/\(name)/leases", nil, "{not json", 400),
                (daemon.unix, "POST", "/v1/services/\(name)/leases", nil, "[1,2]", 400),
                (daemon.unix, "POST", "/v1/services/Bad_Name/leases", ["ttl_ms": 1000], nil, 400),
                (daemon.unix, "POST", "/v1/services/no-such-service/leases", ["ttl_ms": 1000], nil, 404),
                (daemon.unix, "POST", "/v1/services/\(name)/leases", ["ttl_ms": "soon"], nil, 422),
                (daemon.unix, "POST", "/v1/services/\(name)/leases", ["ttl_ms": 5], nil, 422),
                (daemon.unix, "POST", "/v1/services/\(name)/leases", ["ttl_ms": 999_999_999_999], nil, 422),
                (daemon.unix, "POST", "/v1/services/\(name)/leases", ["client_pid": -4], nil, 422),
                (daemon.unix, "PUT", "/v1/services/\(name)-x", ["start": []], nil, 422),
                (daemon.unix, "PUT", "/v1/services/\(name)-x", ["start": "sh -c true"], nil, 422),
                (daemon.unix, "PUT", "/v1/services/\(name)-x", ["start": ["true"], "health": ["tcp": "nope"]], nil, 422),
                (daemon.unix, "DELETE", "/v1/leases/l_doesnotexist", nil, nil, 404),
                (daemon.unix, "POST", "/v1/leases/l_doesnotexist/keepalive", nil, nil, 404),
                (daemon.unix, "GET", "/v1/events?limit=0", nil, nil, 422),
                (daemon.unix, "GET", "/v1/nothing-here", nil, nil, 404),
                (daemon.unix, "PATCH", "/v1/leases", nil, nil, 405),
                (daemon.anonymous, "POST", "/v1/services/\(name)/leases", ["ttl_ms": 1000], nil, 401),
                (daemon.anonymous, "PUT", "/v1/services/\(name)-y", ["start": ["true"]], nil, 401),
                (TestHTTPClient(endpoint: .tcp(port: daemon.port), token: "wrong"), "DELETE", "/v1/leases/x", nil, nil, 401),
            ]
            for (client, method, path, json, raw, expected) in cases {
                let response = try client.send(method, path, json: json, rawBody: raw)
                #expect(response.status == expected, "\(method) \(path): \(response.status) \(response.text)")
                #expect(response.contentType == "application/problem+json", "\(method) \(path)")
                #expect(response.json["status"] as? Int == expected)
                #expect((response.json["detail"] as? String)?.isEmpty == false)
                #expect(response.json["title"] is String && response.json["type"] is String)
            }
            #expect(try daemon.events().count == eventsBefore)
            #expect(try daemon.kernelCount(name) == countBefore)
            #expect(try daemon.unix.get("/v1/services/\(name)-x").status == 404)
        }
    }

    @Test("an oversized body gets 413 and nothing changes")
    func oversizedBody() throws {
        try withDaemon { daemon in
            let eventsBefore = try daemon.events().count
            let huge = "{\"holder\":\"" + String(repeating: "x", count: 200_000) + "\"}"
            let response = try daemon.unix.send("PUT", "/v1/services/huge", rawBody: huge)
            #expect(response.status == 413)
            #expect(response.contentType == "application/problem+json")
            #expect(try daemon.events().count == eventsBefore)
        }
    }

    @Test("the token allows mutating calls over TCP; reads need none")
    func tokenOverTCP() throws {
        try withDaemon { daemon in
            #expect(try daemon.anonymous.get("/v1/health").status == 200)
            #expect(try daemon.anonymous.get("/v1/status").json["pid"] as? Int == Int(daemon.process.processIdentifier))
            let name = daemon.uniqueName("tok")
            let response = try daemon.tcp.send("PUT", "/v1/services/\(name)", json: ["start": ["sleep", "60"]])
            #expect(response.status == 201, "\(response.text)")
            let replaced = try daemon.tcp.send("PUT", "/v1/services/\(name)", json: ["start": ["sleep", "61"]])
            #expect(replaced.status == 200)
            let mode = try FileManager.default.attributesOfItem(atPath: "\(daemon.stateDir)/token")[.posixPermissions] as? Int
            #expect(mode == 0o600)
            let socketMode = try FileManager.default.attributesOfItem(atPath: "\(daemon.stateDir)/procrefd.sock")[.posixPermissions] as? Int
            #expect(socketMode == 0o600)
        }
    }
}
