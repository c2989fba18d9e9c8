import AuditStore
@testable import ControlAPI
import Daemon
import Foundation
import Lifecycle
import Logging
import MicroHTTPD
import Testing

@Suite("API contract")
struct ContractTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Routes of a real ControlAPI (over a throwaway database).
    func routeTemplates() throws -> [String: Set<String>] { try makeAPI().routeTemplates }

    /// A real ControlAPI over a throwaway database.
    func makeAPI() throws -> ControlAPI {
        let dir = NSTemporaryDirectory() + "procrefd-contract-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try AuditStore(path: "\(dir)/db")
        let coordinator = try Coordinator(
            config: CoordinatorConfig(holderExecutable: "/nonexistent", logsDirectory: dir, scope: "contract-tests"), store: store,
            logger: Logger(label: "test"))
        let info = DaemonInfo(
            pid: 1, startedAt: "", stateDirectory: dir, singleton: .available, bootID: "b", onExit: .drain,
            reconciled: ReconcileReport(), serviceCgroup: nil)
        return ControlAPI(coordinator: coordinator, store: store, access: AccessPolicy(token: "t"), daemon: info,
                          requestStop: { _ in })
    }

    @Test("openapi.yaml is valid OpenAPI 3 and lists exactly the router's paths and methods")
    func openAPIMatchesRouter() throws {
        let python = ProcessInfo.processInfo.environment["PROCREFD_PYTHON"] ?? "python3"
        let script = """
            import json, sys, yaml
            from openapi_spec_validator import validate
            spec = yaml.safe_load(open(sys.argv[1]))
            validate(spec)
            methods = {"get", "put", "post", "delete", "patch", "head", "options"}
            print(json.dumps({p: sorted(m for m in ops if m in methods) for p, ops in spec["paths"].items()}))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, "-c", script, Self.root.appendingPathComponent("openapi.yaml").path]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "openapi.yaml invalid or validator missing: \(errorText)")
        let documented = try #require(try JSONSerialization.jsonObject(with: data) as? [String: [String]])
        let routed = try routeTemplates().mapValues { $0.sorted() }
        #expect(documented == routed)
    }
}

@Suite("Router")
struct RouterTests {
    let router = Router(routes: [
        Route("GET", "/v1/leases/{id}", access: .read(.status), .immediate { _, _ in HTTPResponse(status: 200) }),
        Route("DELETE", "/v1/leases/{id}", access: .lease, .immediate { _, _ in HTTPResponse(status: 200) }),
        Route("GET", "/v1/leases", access: .read(.status), .immediate { _, _ in HTTPResponse(status: 200) }),
    ])

    @Test("templates bind parameters; unknown paths are 404, known paths with other methods 405")
    func matching() {
        guard case .found(let route, let parameters) = router.match(method: "DELETE", path: "/v1/leases/l_1") else {
            Issue.record("no match")
            return
        }
        #expect(route.method == "DELETE")
        #expect(parameters == ["id": "l_1"])
        guard case .methodNotAllowed(let allowed) = router.match(method: "POST", path: "/v1/leases/x") else {
            Issue.record("expected 405")
            return
        }
        #expect(Set(allowed) == ["GET", "DELETE"])
        guard case .notFound = router.match(method: "GET", path: "/v1/leases/x/y") else {
            Issue.record("expected 404")
            return
        }
    }

    @Test("bearer tokens compare by content only, over TCP only; reads follow the open scopes")
    func access() {
        let policy = AccessPolicy(token: "secret", readToken: "reader")
        func request(_ method: String, _ transport: Transport, _ auth: String?) -> HTTPRequest {
            HTTPRequest(method: method, path: "/", headers: auth.map { ["authorization": $0] } ?? [:], transport: transport)
        }
        #expect(policy.allows(request("POST", .tcp, "Bearer secret"), .administer))
        #expect(!policy.allows(request("POST", .tcp, "Bearer secreT"), .administer))
        #expect(!policy.allows(request("POST", .tcp, "Bearer secret2"), .administer))
        #expect(!policy.allows(request("POST", .tcp, "Bearer reader"), .administer))
        #expect(!policy.allows(request("POST", .tcp, nil), .administer))
        #expect(policy.allows(request("POST", .unix, nil), .administer))
        for open in ReadScope.openByDefault { #expect(policy.allows(request("GET", .tcp, nil), .read(open))) }
        for closed: ReadScope in [.events, .logs, .processes] {
            #expect(!policy.allows(request("GET", .tcp, nil), .read(closed)), "\(closed)")
            #expect(policy.allows(request("GET", .tcp, "Bearer reader"), .read(closed)), "\(closed)")
            #expect(policy.allows(request("GET", .tcp, "Bearer secret"), .read(closed)), "\(closed)")
            #expect(!policy.allows(request("GET", .tcp, "Bearer other"), .read(closed)), "\(closed)")
            #expect(policy.allows(request("GET", .unix, nil), .read(closed)), "\(closed)")
        }
        let closedAll = AccessPolicy(token: "secret", readToken: "reader", openReads: [])
        #expect(!closedAll.allows(request("GET", .tcp, nil), .read(.status)))
        #expect(closedAll.allows(request("GET", .tcp, nil), .open))
    }

    @Test("every GET names what it reads (or is the admin's); /v1/processes is never open")
    func routeAccess() throws {
        let api = try ContractTests().makeAPI()
        for route in api.routes where route.method == "GET" {
            // A GET reads: it needs a read scope, or nothing, or (the token list) the admin.
            #expect(route.access == .open || route.access == .administer || { if case .read = route.access { return true } else { return false } }(), "\(route.template)")
        }
        #expect(api.routes.first { $0.template == "/v1/processes/{pid}" }?.access == .read(.processes))
        #expect(!ReadScope.openable.contains(.processes))
    }

    @Test("Host must be loopback, the listen address or an allowed host; browsers stay off the Unix socket")
    func browserGuard() {
        let guardian = BrowserGuard(allowedHosts: ["procrefd.example:8443", "Box.Internal"], listenHost: "10.1.2.3")
        func request(_ method: String, _ transport: Transport, _ headers: [String: String]) -> HTTPRequest {
            HTTPRequest(method: method, path: "/v1/status", headers: headers, transport: transport)
        }
        for host in ["localhost", "localhost:7683", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:7683", "127.3.4.5:9", "[::1]", "[::1]:7683",
                     "10.1.2.3:7683", "procrefd.example", "box.internal:80"] {
            #expect(guardian.refusal(for: request("GET", .tcp, ["host": host])) == nil, "\(host)")
        }
        for host in ["attacker.example", "attacker.example:7683", "127.0.0.1.nip.io", "localhost.attacker.example", "128.0.0.1",
                     "127.0.0.256", "[::2]:7683", "", "0.0.0.0"] {
            #expect(guardian.refusal(for: request("GET", .tcp, ["host": host]))?.status == 421, "\(host)")
        }
        #expect(guardian.refusal(for: request("GET", .tcp, [:]))?.status == 421)
        // The Unix socket: anything a browser sends is refused.
        #expect(guardian.refusal(for: request("POST", .unix, ["host": "localhost"])) == nil)
        #expect(guardian.refusal(for: request("POST", .unix, ["host": "localhost", "origin": "http://localhost"]))?.status == 403)
        #expect(guardian.refusal(for: request("GET", .unix, ["host": "localhost", "sec-fetch-site": "cross-site"]))?.status == 403)
        // TCP: a change from another origin is refused; the same origin and reads pass.
        #expect(guardian.refusal(for: request("POST", .tcp, ["host": "127.0.0.1:7683", "origin": "http://evil.example"]))?.status == 403)
        #expect(guardian.refusal(for: request("POST", .tcp, ["host": "127.0.0.1:7683", "origin": "null"]))?.status == 403)
        #expect(guardian.refusal(for: request("POST", .tcp, ["host": "127.0.0.1:7683", "origin": "http://127.0.0.1:7684"]))?.status == 403)
        #expect(guardian.refusal(for: request("POST", .tcp, ["host": "127.0.0.1:7683", "origin": "http://127.0.0.1:7683"])) == nil)
        #expect(guardian.refusal(for: request("POST", .tcp, ["host": "localhost", "origin": "http://localhost:80"])) == nil)
        #expect(guardian.refusal(for: request("GET", .tcp, ["host": "127.0.0.1:7683", "origin": "http://evil.example"])) == nil)
    }

    @Test("service names follow ^[a-z0-9][a-z0-9._-]{0,62}$")
    func names() {
        #expect(ServiceName.isValid("postgres-15.main_a"))
        #expect(ServiceName.isValid(String(repeating: "a", count: 63)))
        #expect(!ServiceName.isValid(String(repeating: "a", count: 64)))
        for bad in ["", "-x", ".x", "Upper", "a b", "a/b", "é"] { #expect(!ServiceName.isValid(bad), "\(bad)") }
    }
}
