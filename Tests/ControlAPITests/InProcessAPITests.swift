import AuditStore
@testable import ControlAPI
import Daemon
import Foundation
@testable import Lifecycle
import MicroHTTPD
import Synchronization
import Testing

/// The router, handlers and error mapping, called in process: no HTTP server, no
/// processes, a stand-in lifecycle core. (The real-process tests prove the features; these
/// pin down requests and responses.)
@Suite("API in process")
struct InProcessAPITests {
    /// An API on a stand-in core and a fresh audit store in a temp dir.
    final class Client: Sendable {
        let core = StandInCore()
        let api: ControlAPI
        let directory: String

        init() throws {
            directory = NSTemporaryDirectory() + "procrefd-api-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let store = try AuditStore(path: directory + "/procrefd.db")
            let daemon = DaemonInfo(
                pid: 1, startedAt: "2026-11-25T18:00:00.000Z", stateDirectory: directory, singleton: .available, bootID: "boot",
                onExit: .drain, reconciled: ReconcileReport(), serviceCgroup: nil)
            api = ControlAPI(coordinator: core, store: store, access: AccessPolicy(token: "secret"), daemon: daemon, requestStop: { _ in })
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        /// Sends a request the way the HTTP layer does: the first answer, awaited when it
        /// comes later.
        func send(_ method: String, _ path: String, body: String = "", headers: [String: String] = [:],
                  query: [(String, String)] = [], transport: Transport = .unix) async -> (status: Int, json: [String: Any], type: String?) {
            let request = HTTPRequest(method: method, path: path, queryItems: query.map { (name: $0.0, value: $0.1) }, headers: ["host": "localhost"].merging(headers) { $1 },
                                      body: Array(body.utf8), transport: transport)
            let response: HTTPResponse
            switch api.firstAnswer(to: request) {
            case .now(let immediate): response = immediate
            case .later(let later): response = await later()
            case .whenReady(let register):
                response = await withCheckedContinuation { continuation in register { continuation.resume(returning: $0) } }
            }
            let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
            return (response.status, json, response.headers.first { $0.0.lowercased() == "content-type" }?.1)
        }
    }

    @Test("an acquire's body reaches the core decoded; the grant comes back as 201 with the lease")
    func acquire() async throws {
        let client = try Client()
        let granted = await client.send("POST", "/v1/services/web/leases", body: #"{"ttl_ms":5000,"holder":"job"}"#,
                                        headers: ["idempotency-key": "k1"])
        #expect(granted.status == 201)
        #expect(granted.json["id"] as? String == StandInCore.lease.id)
        #expect(granted.json["started"] as? Bool == true)
        #expect(granted.json["holder_pid"] as? Int == 4242)
        #expect(client.core.calls.withLock { $0 } == ["acquire web ttl=5000 holder=job key=k1"])
    }

    @Test("bad bodies are refused before the core is asked: malformed JSON 400, an unknown key or a wrong type 422")
    func badBodies() async throws {
        let client = try Client()
        let malformed = await client.send("POST", "/v1/services/web/leases", body: #"{"ttl_ms":"#)
        #expect(malformed.status == 400)
        #expect(malformed.type == "application/problem+json")
        let unknown = await client.send("POST", "/v1/services/web/leases", body: #"{"ttl":5000}"#)
        #expect(unknown.status == 422)
        #expect((unknown.json["detail"] as? String)?.contains("ttl") == true)
        let wrongType = await client.send("POST", "/v1/services/web/leases", body: #"{"ttl_ms":"soon"}"#)
        #expect(wrongType.status == 422)
        let badName = await client.send("POST", "/v1/services/Web!/leases", body: "{}")
        #expect(badName.status == 400 || badName.status == 422)
        #expect(client.core.calls.withLock { $0 }.isEmpty)
    }

    @Test("lifecycle errors map to their statuses and problem types")
    func errorMapping() async throws {
        let client = try Client()
        let cases: [(String, String, Int, String)] = [
            ("POST", "/v1/services/db/leases", 404, "unknown-service"),
            ("DELETE", "/v1/leases/l_nope", 404, "unknown-lease"),
            ("POST", "/v1/services/web/restart", 409, "service-busy"),
            ("POST", "/v1/services/web/reset", 409, "service-not-failed"),
            ("DELETE", "/v1/services/web", 409, "service-leased"),
            ("POST", "/v1/processes/1/signal", 403, "process-not-managed"),
        ]
        for (method, path, status, slug) in cases {
            let body = path.hasSuffix("/signal") ? #"{"signal":"TERM"}"# : (method == "POST" ? "{}" : "")
            let answer = await client.send(method, path, body: body)
            #expect(answer.status == status, "\(method) \(path): \(answer.json)")
            #expect((answer.json["type"] as? String)?.hasSuffix(slug) == true, "\(method) \(path): \(answer.json)")
            #expect(answer.type == "application/problem+json")
        }
        client.core.acquireError.withLock { $0 = .serviceFailed(service: "web", reason: "3 restarts") }
        let failed = await client.send("POST", "/v1/services/web/leases", body: "{}")
        #expect(failed.status == 503)
    }

    @Test("over TCP, a change without the token is 401 and never reaches the core; reads need none")
    func token() async throws {
        let client = try Client()
        let refused = await client.send("DELETE", "/v1/leases/\(StandInCore.lease.id)", transport: .tcp)
        #expect(refused.status == 401)
        #expect(client.core.calls.withLock { $0 }.isEmpty)
        let allowed = await client.send("DELETE", "/v1/leases/\(StandInCore.lease.id)", headers: ["authorization": "Bearer secret"],
                                        transport: .tcp)
        #expect(allowed.status == 200)
        #expect(allowed.json["service_stopped"] as? Bool == true)
        #expect(await client.send("GET", "/v1/leases", transport: .tcp).status == 200)
    }

    @Test("status and lease lists come from the core; unknown query parameters are 422")
    func reads() async throws {
        let client = try Client()
        let status = await client.send("GET", "/v1/status")
        #expect(status.status == 200)
        let services = status.json["services"] as? [[String: Any]]
        #expect(services?.first?["name"] as? String == "web")
        #expect(services?.first?["state"] as? String == "ready")
        let leases = await client.send("GET", "/v1/leases", query: [("service", "web")])
        #expect((leases.json["leases"] as? [[String: Any]])?.count == 1)
        let typo = await client.send("GET", "/v1/leases", query: [("servce", "web")])
        #expect(typo.status == 422)
    }
}
