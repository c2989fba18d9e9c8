import AuditStore
import FoundationEssentials
import Lifecycle
import Metrics
import MicroHTTPD
import Posix
import Wire

/// procrefd's REST API: routes requests to the lifecycle core and the audit store.
public final class ControlAPI: HTTPResponder {
    public static let version = "0.1.0"
    /// `limits.max_streams` by default.
    public static let defaultMaxStreams = 64

    /// On every answer that does not set its own: no answer is sniffed into another type,
    /// and none is kept in a browser's or a proxy's cache.
    public static let defaultHeaders: [(String, String)] = [("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]

    let coordinator: any LifecycleCore
    let store: AuditStore
    /// Swapped whole by a config reload; each request reads it once.
    let access: SharedValue<AccessPolicy>
    /// The longest a long-poll is held (`limits.max_wait_ms`); a reload may change it.
    let longPollLimitMs: SharedValue<Int>
    /// Streams, follows and long-polls open now, and their bound (`limits.max_streams`).
    let streams: HeldConnections
    /// Refusals of a role or a service, recorded as `access.denied`.
    let denials: DenialLog
    /// Named tokens in force.
    let tokens: TokenBook
    let startedAt = Date()
    private let router: Router

    /// - Parameters:
    ///   - metrics: renders the Prometheus text exposition for `GET /metrics`.
    ///   - longPollLimitMs: the longest `GET /v1/events?wait_ms=` is held.
    ///   - hangups: watches the connections of acquires that queue, so a client that hangs up
    ///     leaves the queue (nil: not watched).
    public init(
        coordinator: any LifecycleCore, store: AuditStore, access: AccessPolicy, daemon: DaemonInfo,
        metrics: @escaping @Sendable () -> [UInt8] = { [] }, longPollLimitMs: Int = EventQuery.maxWaitMs,
        maxStreams: Int = 64, hangups: IOLoop? = nil, requestStop: @escaping StopRequester
    ) {
        self.coordinator = coordinator
        self.store = store
        let tokens = TokenBook((try? store.read { try $0.tokens() }) ?? [])
        let (shared, longPoll, streams) = (SharedValue(access.with(tokens: tokens)), SharedValue(longPollLimitMs), HeldConnections(limit: maxStreams))
        self.tokens = tokens
        let denials = DenialLog(store: store)
        (self.access, self.longPollLimitMs, self.streams, self.denials) = (shared, longPoll, streams, denials)
        router = Router(routes: Self.makeRoutes(
            coordinator: coordinator, store: store, access: shared, startedAt: startedAt, daemon: daemon, metrics: metrics,
            longPollLimitMs: longPoll, streams: streams, denials: denials, tokens: tokens, hangups: hangups, requestStop: requestStop))
    }

    /// Applies a reloaded `[security]`, `limits.max_wait_ms` and `limits.max_streams` to
    /// requests that start after it.
    public func update(access policy: AccessPolicy, longPollLimitMs: Int, maxStreams: Int) {
        UserNames.forget()  // group memberships may have changed with [access]
        access.set(policy.with(tokens: tokens))
        self.longPollLimitMs.set(longPollLimitMs)
        streams.setLimit(maxStreams)
    }

    /// The route templates by path, with their methods (lower case), for contract tests.
    public var routeTemplates: [String: Set<String>] { router.templates }

    /// Every route, for contract tests.
    var routes: [Route] { router.routes }

    public func firstAnswer(to request: HTTPRequest) -> FirstAnswer {
        let (route, resolution) = resolve(request)
        let method = request.method
        switch resolution {
        case .answer(let response): return .now(counted(response, route: route, method: method))
        case .run(let handler, let parameters, let caller):
            var request = request
            request.attachment = caller  // the handler's `callerOf` reads it back
            return run(handler, request, parameters, route: route)
        }
    }

    private func run(_ handler: Route.Handler, _ request: HTTPRequest, _ parameters: PathParameters, route: String) -> FirstAnswer {
        let method = request.method
        switch handler {
        case .immediate(let handler):
            return .now(counted(handler(request, parameters), route: route, method: method))
        case .suspending(let handler):
            return .later { [self] in counted(await handler(request, parameters), route: route, method: method) }
        case .firstTry(let handler):
            switch handler(request, parameters) {
            case .now(let response): return .now(counted(response, route: route, method: method))
            case .later(let later): return .later { [self] in counted(await later(), route: route, method: method) }
            case .whenReady(let register):
                return .whenReady { [self] respond in register { [self] in respond(counted($0, route: route, method: method)) } }
            }
        }
    }

    /// Counts the request by route template, method and status.
    private func counted(_ response: HTTPResponse, route: String, method: String) -> HTTPResponse {
        requests(route, method, String(response.status)).increment()
        return response
    }

    private let requests = MetricCache {
        Counter(label: "procrefd_http_requests_total", dimensions: [("route", $0[0]), ("method", $0[1]), ("status", $0[2])])
    }

    private enum Resolution {
        case answer(HTTPResponse)
        case run(Route.Handler, PathParameters, Caller)
    }

    /// The matched route template ("unmatched" when none) and what to do.
    private func resolve(_ request: HTTPRequest) -> (String, Resolution) {
        let policy = access.current
        if let refusal = policy.browsers.refusal(for: request) { return ("refused", .answer(refusal.response)) }
        switch router.match(method: request.method, path: request.path) {
        case .notFound:
            return ("unmatched", .answer(Problem(status: 404, slug: "not-found", title: "Not Found", detail: "no route for \(request.path)").response))
        case .methodNotAllowed(let allowed):
            var problem = Problem(status: 405, slug: "method-not-allowed", title: "Method Not Allowed",
                                  detail: "\(request.method) is not allowed on \(request.path)")
            problem.headers = [("Allow", allowed.joined(separator: ", "))]
            return ("unmatched", .answer(problem.response))
        case .found(let route, let parameters):
            let caller = policy.caller(of: request)
            if let refusal = policy.refusal(caller, request, route.access) {
                if refusal.status == 403 { denials.record(caller.principal, "\(request.method) \(route.template)", refusal.detail) }
                return (route.template, .answer(refusal.response))
            }
            if let unknown = request.queryItems.first(where: { !route.query.contains($0.name) })?.name {
                let takes = route.query.isEmpty ? "none" : route.query.sorted().joined(separator: ", ")
                let problem = Problem.invalidField(unknown.isEmpty ? "query" : unknown, "unknown query parameter (\(route.template) takes: \(takes))")
                return (route.template, .answer(problem.response))
            }
            return (route.template, .run(route.handler, parameters, caller))
        }
    }
}

private let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
}()

/// A JSON response of `value`. Every body ends with a newline, as a terminal wants it.
func json(_ value: some Encodable, status: Int = 200) -> HTTPResponse {
    do {
        let body = try encoder.encode(value)
        return HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: Array(body) + [10])
    } catch {
        return Problem(status: 500, slug: "internal", title: "Internal Server Error", detail: "encoding: \(error)").response
    }
}

/// A JSON response written by hand.
func json(_ value: some HandWrittenJSON, status: Int = 200) -> HTTPResponse {
    HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: Array(value.jsonText.utf8) + [10])
}

/// Decodes a JSON object body, turning decoder errors into 400/422 problems naming the field.
/// `plain` may read the value straight from the strict check's members (a body that is
/// exactly what the schema wants); when it returns nil, the decoder reads the body and says
/// what is wrong.
func decodeBody<T: Decodable>(
    _ type: T.Type, from request: HTTPRequest, emptyAs empty: T? = nil, plain: ((StrictJSON) -> T?)? = nil
) throws(Problem) -> T {
    if request.body.isEmpty, let empty { return empty }
    // A cheap look at the first byte; the strict check and the decoder look at the rest.
    guard request.body.first(where: { ![9, 10, 13, 32].contains($0) }) == UInt8(ascii: "{") else {
        throw .badRequest("body must be a JSON object")
    }
    let strict: StrictJSON
    do { strict = try StrictJSON.check(request.body) } catch {
        switch error {
        case let .syntax(why, at): throw .badRequest("body is not valid JSON: \(why) at byte \(at)")
        case .null(let path): throw .invalidField(path, "must not be null; leave the field out instead")
        }
    }
    if let plain, let value = plain(strict) { return value }
    do {
        return try JSONDecoder().decode(T.self, from: Data(request.body))
    } catch let error as DefinitionError {
        throw .invalidField(error.field, error.message)
    } catch let DecodingError.typeMismatch(type, context) {
        throw .invalidField(fieldPath(context), "must be \(jsonKind(of: type))")
    } catch let DecodingError.valueNotFound(type, context) {
        throw .invalidField(fieldPath(context), "must be \(jsonKind(of: type))")
    } catch let DecodingError.keyNotFound(key, context) {
        throw .invalidField(fieldPath(context, key), "is required")
    } catch let DecodingError.dataCorrupted(context) where context.codingPath.isEmpty {
        // Valid JSON the decoder would not take: a number that does not fit the integer.
        if let field = strict.fractionalNumbers.first { throw .invalidField(field, "must be an integer") }
        throw .badRequest("body does not match the schema: a number out of range, or text that is not UTF-8")
    } catch let DecodingError.dataCorrupted(context) {
        throw .invalidField(fieldPath(context), "has a value of the wrong kind")
    } catch {
        throw .badRequest("body does not match the schema")
    }
}

/// The JSON words for what a Swift type decodes from.
private func jsonKind(of type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Bool.Type: return "true or false"
    case is Int.Type, is Int64.Type, is Int32.Type, is UInt16.Type, is UInt32.Type: return "an integer"
    case is Double.Type: return "a number"
    default:
        let name = String(describing: type)
        if name.hasPrefix("Array") { return "an array" }
        if name.hasPrefix("Dictionary") { return "an object" }
        return "of another kind (see openapi.yaml)"
    }
}

private func fieldPath(_ context: DecodingError.Context, _ last: CodingKey? = nil) -> String {
    let keys = context.codingPath + (last.map { [$0] } ?? [])
    let path = keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    return path.isEmpty ? "body" : path
}
