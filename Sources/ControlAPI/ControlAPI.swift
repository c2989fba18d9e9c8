import AuditStore
import Foundation
import Lifecycle
import MicroHTTPD
import Metrics

/// procrefd's REST API: routes requests to the lifecycle core and the audit store.
public final class ControlAPI: HTTPResponder {
    public static let version = "0.1.0"

    let coordinator: Coordinator
    let store: AuditStore
    let access: AccessPolicy
    let startedAt = Date()
    private let router: Router

    /// - Parameters:
    ///   - metrics: renders the Prometheus text exposition for `GET /metrics`.
    ///   - longPollLimitMs: the longest `GET /v1/events?wait_ms=` is held.
    public init(
        coordinator: Coordinator, store: AuditStore, access: AccessPolicy, daemon: DaemonInfo,
        metrics: @escaping @Sendable () -> [UInt8] = { [] }, longPollLimitMs: Int = EventQuery.maxWaitMs,
        requestStop: @escaping StopRequester
    ) {
        self.coordinator = coordinator
        self.store = store
        self.access = access
        router = Router(routes: Self.makeRoutes(
            coordinator: coordinator, store: store, startedAt: startedAt, daemon: daemon, metrics: metrics,
            longPollLimitMs: longPollLimitMs, requestStop: requestStop))
    }

    /// The route templates by path, with their methods (lower case), for contract tests.
    public var routeTemplates: [String: Set<String>] { router.templates }

    public func respondImmediately(to request: HTTPRequest) -> HTTPResponse? {
        let (route, resolution) = resolve(request)
        switch resolution {
        case .answer(let response): return counted(response, route: route, method: request.method)
        case .run(.immediate(let handler), let parameters):
            return counted(handler(request, parameters), route: route, method: request.method)
        case .run(.suspending, _): return nil
        }
    }

    public func respond(to request: HTTPRequest) async -> HTTPResponse {
        let (route, resolution) = resolve(request)
        let response: HTTPResponse
        switch resolution {
        case .answer(let answer): response = answer
        case .run(.immediate(let handler), let parameters): response = handler(request, parameters)
        case .run(.suspending(let handler), let parameters): response = await handler(request, parameters)
        }
        return counted(response, route: route, method: request.method)
    }

    /// Counts the request by route template, method and status.
    private func counted(_ response: HTTPResponse, route: String, method: String) -> HTTPResponse {
        Counter(label: "procrefd_http_requests_total", dimensions: [("route", route), ("method", method), ("status", String(response.status))])
            .increment()
        return response
    }

    private enum Resolution {
        case answer(HTTPResponse)
        case run(Route.Handler, PathParameters)
    }

    /// The matched route template ("unmatched" when none) and what to do.
    private func resolve(_ request: HTTPRequest) -> (String, Resolution) {
        switch router.match(method: request.method, path: request.path) {
        case .notFound:
            return ("unmatched", .answer(Problem(status: 404, slug: "not-found", title: "Not Found", detail: "no route for \(request.path)").response))
        case .methodNotAllowed(let allowed):
            var problem = Problem(status: 405, slug: "method-not-allowed", title: "Method Not Allowed",
                                  detail: "\(request.method) is not allowed on \(request.path)")
            problem.headers = [("Allow", allowed.joined(separator: ", "))]
            return ("unmatched", .answer(problem.response))
        case .found(let route, let parameters):
            guard access.allows(request) else {
                var problem = Problem(status: 401, slug: "unauthorized", title: "Unauthorized",
                                      detail: "this call over TCP needs Authorization: Bearer <token> (see STATE/token)")
                problem.headers = [("WWW-Authenticate", "Bearer")]
                return (route.template, .answer(problem.response))
            }
            return (route.template, .run(route.handler, parameters))
        }
    }
}

/// Who a request acts as, for the audit log.
func actor(of request: HTTPRequest) -> String {
    request.transport == .unix ? Actor.unixSocket : "tcp:\(request.remoteAddress)"
}

private let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
}()

/// A JSON response of `value`.
func json(_ value: some Encodable, status: Int = 200) -> HTTPResponse {
    do {
        let body = try encoder.encode(value)
        return HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: Array(body))
    } catch {
        return Problem(status: 500, slug: "internal", title: "Internal Server Error", detail: "encoding: \(error)").response
    }
}

/// A JSON response written by hand.
func json(_ value: some HandWrittenJSON, status: Int = 200) -> HTTPResponse {
    HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: Array(value.jsonText.utf8))
}

/// Decodes a JSON object body, turning decoder errors into 400/422 problems naming the field.
func decodeBody<T: Decodable>(_ type: T.Type, from request: HTTPRequest, emptyAs empty: T? = nil) throws(Problem) -> T {
    if request.body.isEmpty, let empty { return empty }
    // A cheap look at the first byte; the decoder below checks the rest.
    guard request.body.first(where: { ![9, 10, 13, 32].contains($0) }) == UInt8(ascii: "{") else {
        throw .badRequest("body must be a JSON object")
    }
    do {
        return try JSONDecoder().decode(T.self, from: Data(request.body))
    } catch let error as DefinitionError {
        throw .invalidField(error.field, error.message)
    } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
        throw .invalidField(fieldPath(context), "wrong type: \(context.debugDescription)")
    } catch let DecodingError.keyNotFound(key, context) {
        throw .invalidField(fieldPath(context, key), "is required")
    } catch let DecodingError.dataCorrupted(context) where context.codingPath.isEmpty {
        throw .badRequest("body is not valid JSON: \(context.debugDescription)")
    } catch let DecodingError.dataCorrupted(context) {
        throw .invalidField(fieldPath(context), context.debugDescription)
    } catch {
        throw .badRequest("body is not valid JSON: \(error)")
    }
}

private func fieldPath(_ context: DecodingError.Context, _ last: CodingKey? = nil) -> String {
    let keys = context.codingPath + (last.map { [$0] } ?? [])
    let path = keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    return path.isEmpty ? "body" : path
}
