import AuditStore
import Daemon
import FoundationEssentials
import Lifecycle
import Metrics
import MicroHTTPD
import Posix
import Wire

extension ControlAPI {
    /// Every endpoint. openapi.yaml lists exactly these paths (a test compares them).
    static func makeRoutes(
        coordinator: any LifecycleCore, store: AuditStore, access: SharedValue<AccessPolicy>, startedAt: Date, daemon: DaemonInfo,
        metrics: @escaping @Sendable () -> [UInt8], longPollLimitMs: SharedValue<Int>, streams: HeldConnections, denials: DenialLog, tokens: TokenBook, hangups: IOLoop?, requestStop: @escaping StopRequester
    ) -> [Route] {
        // Worked out once per request, before its handler (see `ControlAPI.resolve`).
        let callerOf = { @Sendable (request: HTTPRequest) -> Caller in request.attachment as? Caller ?? access.current.caller(of: request) }
        let principalOf = { @Sendable (request: HTTPRequest) -> Principal in callerOf(request).principal }
        let leases = LeaseAccess(coordinator: coordinator, denials: denials)
        let statusDocument = StatusDocument(
            coordinator: coordinator, startedAt: startedAt, version: version, auditWaiting: { store.backlogCount })
        return [
            Route("GET", "/v1/health", access: .open, .immediate { _, _ in healthResponse }),

            Route("GET", "/v1/whoami", access: .open, .immediate { request, _ in
                json(WhoamiPayload(callerOf(request), accessRules: access.current.rules != nil))
            }),

            Route("GET", "/v1/status", query: ["service"], access: .read(.status), .immediate { request, _ in
                answer { try statusDocument.response(to: request) }
            }),

            Route("GET", "/metrics", access: .read(.metrics), .immediate { _, _ in
                Telemetry.recordState(of: coordinator)
                Gauge(label: "procrefd_audit_waiting_records").record(store.backlogCount)
                return HTTPResponse(
                    status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], body: MetricsHelp.add(to: metrics()))
            }),

            Route("GET", "/", access: .open, .immediate { request, _ in Dashboard.response(file: "index.html", to: request) }),
            Route("GET", "/ui/{file}", access: .open, .immediate { request, p in Dashboard.response(file: p["file", default: ""], to: request) }),

            Route("GET", "/v1/daemon", access: .read(.status), .immediate { request, _ in
                let (policy, caller) = (access.current, callerOf(request))
                return json(DaemonPayload(
                    daemon, version: version, admin: caller.has(.admin),
                    canRead: ReadScope.allCases.filter { policy.refusal(caller, request, .read($0)) == nil }.map(\.rawValue)))
            }),

            Route("POST", "/v1/daemon/stop", access: .administer, .immediate { request, _ in
                answer {
                    let body = try decodeBody(StopRequest.self, from: request, emptyAs: StopRequest(mode: nil))
                    requestStop(body.mode)
                    return json(StopPayload(stopping: true, mode: (body.mode ?? daemon.onExit).rawValue), status: 202)
                }
            }),

            Route("GET", "/v1/services", access: .read(.services), .immediate { request, _ in
                let admin = callerOf(request).has(.admin)
                return json(ServiceListPayload(services: coordinator.serviceStatuses().map { ServicePayload($0, revealing: admin) }))
            }),

            Route("GET", "/v1/groups", access: .read(.services), .immediate { _, _ in
                json(GroupListPayload(groups: coordinator.groupStatuses().map(GroupPayload.init)))
            }),

            Route("GET", "/v1/services/{name}", access: .read(.services), .immediate { request, p in
                answer {
                    json(ServicePayload(try coordinator.serviceStatus(p["name", default: ""]), revealing: callerOf(request).has(.admin)))
                }
            }),

            Route("PUT", "/v1/services/{name}", access: .administer, .suspending { request, p in
                await answerAsync {
                    let name = p["name", default: ""]
                    guard ServiceName.isValid(name) else { throw Problem(.invalidName(name)) }
                    let definition = try decodeBody(ServiceDefinition.self, from: request)
                    let created = try await coordinator.defineService(name: name, definition: definition, actor: principalOf(request))
                    let status = try coordinator.serviceStatus(name)
                    return json(ServicePayload(status, revealing: true), status: created ? 201 : 200)
                }
            }),

            Route("GET", "/v1/services/{name}/logs", query: ["tail", "follow"], access: .read(.logs), .immediate { request, p in
                answer {
                    let path = try coordinator.logPath(of: p["name", default: ""])
                    let lines = try request.integer("tail", in: 0...ServiceLogs.maxTail) ?? 100
                    let (start, end) = ServiceLogs.tail(path, lines: lines)
                    let headers = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]
                    let stopping = { @Sendable [signal = store.signal] in signal.isClosed }
                    guard try request.boolean("follow") == true else {
                        return HTTPResponse(status: 200, headers: headers, stream: LogFollower(path: path, from: start, until: end, stopping: stopping))
                    }
                    guard let held = streams.hold(LogFollower(path: path, from: start, until: nil, stopping: stopping)) else { throw Problem.tooManyStreams(streams.limit) }
                    return HTTPResponse(status: 200, headers: headers, stream: held)
                }
            }),

            Route("DELETE", "/v1/services/{name}", access: .administer, .suspending { request, p in
                await answerAsync {
                    let name = p["name", default: ""]
                    try await coordinator.removeService(name, actor: principalOf(request))
                    return json(ServiceRemovedPayload(name: name, removed: true))
                }
            }),

            Route("POST", "/v1/services/{name}/leases", access: .lease, .firstTry { request, p in
                let (name, caller) = (p["name", default: ""], callerOf(request))
                let body: AcquireRequest
                var idempotency: IdempotencyKey?
                do {
                    guard ServiceName.isValid(name) else { throw Problem(.invalidName(name)) }
                    var decoded = try decodeBody(AcquireBody.self, from: request, emptyAs: AcquireBody(), plain: AcquireBody.plain).request
                    try leases.checkAcquire(by: caller, service: name, clientPID: decoded.clientPID)
                    // Checked again by the core through the client's pidfd, which the holder
                    // then watches: the pid cannot change hands in between.
                    if !caller.has(.operator) { decoded.clientOwner = caller.principal.uid }
                    body = decoded
                    if let key = request.header("idempotency-key") {
                        guard IdempotencyKey.isValid(key) else { throw Problem.badRequest("Idempotency-Key: 1 to 255 visible ASCII characters") }
                        idempotency = IdempotencyKey(key: key, requestHash: ETag.of(Array(name.utf8) + [0] + request.body))
                    }
                } catch {
                    return .now(problem(for: error).response)
                }
                let (actor, key) = (caller.principal, idempotency)
                let granted = { @Sendable (grant: LeaseGrant) in json(GrantPayload(grant: grant), status: grant.replayed ? 200 : 201) }
                if key == nil, let first = answerNow(coordinator.acquireNow(service: name, request: body, actor: actor), granted) {
                    return first
                }
                return .later {
                    await answerAsync {
                        let acquire = { @Sendable () async throws(LifecycleError) -> LeaseGrant in
                            try await coordinator.acquire(service: name, request: body, actor: actor, idempotency: key)
                        }
                        // An acquire that may queue leaves the queue when its client hangs up.
                        return granted(body.waitMs > 0 ? try await untilHangup(of: request, on: hangups, acquire) : try await acquire())
                    }
                }
            }),

            Route("POST", "/v1/services/{name}/restart", access: .operate, .suspending { request, p in
                await answerAsync {
                    let name = p["name", default: ""]
                    try await coordinator.restartService(name, actor: principalOf(request))
                    return json(ServicePayload(try coordinator.serviceStatus(name), revealing: true))
                }
            }),

            Route("POST", "/v1/services/{name}/reset", access: .operate, .suspending { request, p in
                await answerAsync {
                    let name = p["name", default: ""]
                    try await coordinator.resetService(name, actor: principalOf(request))
                    return json(ServicePayload(try coordinator.serviceStatus(name), revealing: true))
                }
            }),

            Route("GET", "/v1/processes/{pid}", access: .read(.processes), .immediate { _, p in
                answer {
                    let pid = try pid(p)
                    // One answer for "no such process" and "not one of ours": which pids exist,
                    // and whose they are, is not told to readers (/proc may be mounted hidepid).
                    do { return json(ProcessPayload(process: try coordinator.managedProcess(pid))) } catch LifecycleError.noSuchProcess, LifecycleError.processNotManaged {
                        throw Problem(status: 404, slug: "not-managed", title: "Not Managed", detail: "pid \(pid) is not a process procrefd manages")
                    }
                }
            }),

            Route("POST", "/v1/processes/{pid}/signal", access: .operate, .suspending { request, p in
                await answerAsync {
                    let pid = try pid(p)
                    let body = try decodeBody(SignalRequest.self, from: request)
                    let process = try await coordinator.signalProcess(pid, signalName: body.signal, actor: principalOf(request))
                    return json(SignalPayload(pid: pid, signal: body.signal.uppercased(), owner: process.owner.kind))
                }
            }),

            Route("POST", "/v1/processes/{pid}/stop", access: .operate, .suspending { request, p in
                await answerAsync {
                    let pid = try pid(p)
                    let body = try decodeBody(StopProcessRequest.self, from: request, emptyAs: StopProcessRequest(timeoutMs: 5_000))
                    let outcome = try await coordinator.stopProcess(pid, timeoutMs: body.timeoutMs, actor: principalOf(request))
                    return json(StopProcessPayload(pid: pid, endedBy: outcome.endedBy, owner: outcome.process.owner.kind))
                }
            }),

            Route("GET", "/v1/leases", query: ["service"], access: .read(.status), .immediate { request, _ in
                // Below operator, one's own leases only.
                let caller = callerOf(request)
                let visible = coordinator.leaseInfos(service: request.query["service"]).filter { caller.has(.operator) || caller.mayManage(leaseOf: $0.owner) }
                return json(LeaseListPayload(leases: visible.map(LeasePayload.init)))
            }),

            Route("GET", "/v1/leases/{id}", access: .read(.status), .immediate { request, p in
                answer {
                    let (id, caller) = (p["id", default: ""], callerOf(request))
                    let lease = try coordinator.leaseInfo(id: id)
                    guard caller.mayManage(leaseOf: lease.owner) else { throw Problem(LifecycleError.unknownLease(id)) }
                    return json(LeasePayload(lease))
                }
            }),

            Route("POST", "/v1/leases/{id}/keepalive", access: .lease, .suspending { request, p in
                await answerAsync {
                    // The holder restarts its own deadline with the lease's ttl_ms: a body
                    // asking for another TTL is refused, never silently ignored.
                    _ = try decodeBody(KeepaliveRequest.self, from: request, emptyAs: KeepaliveRequest())
                    let (id, caller) = (p["id", default: ""], callerOf(request))
                    try leases.checkManage(by: caller, lease: id, what: "keep alive")
                    return json(LeasePayload(try await coordinator.keepalive(id: id, actor: caller.principal)))
                }
            }),

            Route("DELETE", "/v1/leases/{id}", access: .lease, .firstTry { request, p in
                let (id, caller) = (p["id", default: ""], callerOf(request))
                let actor = caller.principal
                do { try leases.checkManage(by: caller, lease: id, what: "release") } catch { return .now(problem(for: error).response) }
                let released = { @Sendable (result: ReleaseResult) in
                    json(ReleasePayload(id: result.lease, count: result.count, serviceStopped: result.stoppedService))
                }
                if let first = answerNow(coordinator.releaseNow(id: id, actor: actor), released) { return first }
                return .later { await answerAsync { released(try await coordinator.release(id: id, actor: actor)) } }
            }),

            Route("POST", "/v1/tokens", access: .administer, .suspending { request, _ in
                await answerAsync {
                    let body = try decodeBody(TokenRequest.self, from: request)
                    let (record, secret) = try await NamedTokens.create(body, by: principalOf(request), store: store, book: tokens)
                    return json(TokenPayload(record, secret: secret), status: 201)
                }
            }),

            Route("GET", "/v1/tokens", access: .administer, .immediate { _, _ in
                answer { json(TokenListPayload(tokens: try store.read { try $0.tokens() }.map { TokenPayload($0, secret: nil) })) }
            }),

            Route("DELETE", "/v1/tokens/{name}", access: .administer, .suspending { request, p in
                await answerAsync {
                    let record = try await NamedTokens.revoke(p["name", default: ""], by: principalOf(request), store: store, book: tokens)
                    return json(TokenPayload(record, secret: nil))
                }
            }),

            Route("GET", "/v1/events", query: EventQuery.parameters, access: .read(.events), .suspending { request, _ in
                await answerAsync { try await EventQuery.respond(to: request, store: store, holdLimitMs: longPollLimitMs.current, streams: streams) }
            }),
        ]
    }

    /// The `{pid}` path parameter: a positive integer.
    static func pid(_ parameters: PathParameters) throws(Problem) -> Int32 {
        guard let pid = Int32(parameters["pid", default: ""]), pid > 0 else {
            throw .badRequest("pid must be a positive integer")
        }
        return pid
    }

}

/// Runs a handler body, turning what it throws into a problem response: problems as they
/// are, lifecycle errors by their mapping, anything else as 500.
func answer(_ body: () throws -> HTTPResponse) -> HTTPResponse {
    do { return try body() } catch { return problem(for: error).response }
}

func answerAsync(_ body: () async throws -> HTTPResponse) async -> HTTPResponse {
    do { return try await body() } catch { return problem(for: error).response }
}

/// The first answer of a call the core tried on this thread; nil when it did not try.
func answerNow<T: Sendable>(_ attempt: Attempt<T>, _ respond: @escaping @Sendable (T) -> HTTPResponse) -> FirstAnswer? {
    switch attempt {
    case .notAttempted: return nil
    case .done(let value): return .now(respond(value))
    case .failed(let error): return .now(Problem(error).response)
    case .continuing(let rest): return .later { await answerAsync { respond(try await rest()) } }
    case .whenCommitted(let register):
        return .whenReady { deliver in
            register { outcome in
                switch outcome {
                case .success(let value): deliver(respond(value))
                case .failure(let error): deliver(Problem(error).response)
                }
            }
        }
    }
}

func problem(for error: Error) -> Problem {
    switch error {
    case let problem as Problem: return problem
    case let lifecycle as LifecycleError: return Problem(lifecycle)
    default: return Problem(status: 500, slug: "internal", title: "Internal Server Error", detail: String(describing: error))
    }
}

/// `GET /v1/health`: always the same answer.
private let healthResponse = HTTPResponse(
    status: 200, headers: [("Content-Type", "application/json")], body: Array(#"{"status":"ok"}"#.utf8) + [10])

/// Entity tags: FNV-1a 64 of the body, in hex.
enum ETag {
    /// If-None-Match's weak comparison (RFC 9110 §13.1.2): `*`, or any listed tag whose
    /// opaque part equals `tag`'s, with or without `W/` on either side.
    static func matchesWeakly(_ header: String, _ tag: String) -> Bool {
        func opaque(_ text: Substring) -> Substring { text.hasPrefix("W/") ? text.dropFirst(2) : text }
        let own = opaque(Substring(tag))
        return header.split(separator: ",").contains { part in
            let candidate = part.trimmed()
            return candidate == "*" || opaque(Substring(candidate)) == own
        }
    }

    static func of(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(hash, radix: 16)
    }
}
