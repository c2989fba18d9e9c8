import MicroHTTPD

/// Path parameters of a matched route, by name.
public typealias PathParameters = [String: String]

/// A route: method, OpenAPI-style path template (`/v1/leases/{id}`), and handler.
struct Route: Sendable {
    enum Handler: Sendable {
        /// Answers on the HTTP thread without waiting on anything slow.
        case immediate(@Sendable (HTTPRequest, PathParameters) -> HTTPResponse)
        /// May wait (service start, holder exit): runs while the connection is suspended.
        case suspending(@Sendable (HTTPRequest, PathParameters) async -> HTTPResponse)
        /// Tries on the HTTP thread first (the lease fast path), and says when the rest waits.
        case firstTry(@Sendable (HTTPRequest, PathParameters) -> FirstAnswer)
    }

    enum Segment: Sendable {
        case literal(Substring)
        case parameter(String)
    }

    let method: String
    let template: String
    let handler: Handler
    /// The query parameters the route takes; any other is refused (422), so a typo such
    /// as `servce=web` never silently widens an answer.
    let query: Set<String>
    /// What it needs: every route says (a contract test checks the GETs read).
    let access: RouteAccess
    /// The template parsed once: matching runs on every request.
    let segments: [Segment]

    init(_ method: String, _ template: String, query: Set<String> = [], access: RouteAccess, _ handler: Handler) {
        self.method = method
        self.template = template
        self.query = query
        self.access = access
        self.handler = handler
        self.segments = template.split(separator: "/", omittingEmptySubsequences: true).map { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? .parameter(String(part.dropFirst().dropLast())) : .literal(part)
        }
    }

    func match(_ pathSegments: [Substring]) -> PathParameters? {
        guard pathSegments.count == segments.count else { return nil }
        // Literals first, so a route that does not match allocates nothing.
        for (pattern, value) in zip(segments, pathSegments) {
            switch pattern {
            case .literal(let literal): if literal != value { return nil }
            case .parameter: if value.isEmpty { return nil }
            }
        }
        var parameters: PathParameters = [:]
        for case (.parameter(let name), let value) in zip(segments, pathSegments) { parameters[name] = String(value) }
        return parameters
    }
}

/// Finds the route for a request: 404 for an unknown path, 405 for a known path with
/// another method.
struct Router: Sendable {
    let routes: [Route]
    /// Routes by number of path segments, in declaration order: a path is only compared
    /// with templates of its own length.
    private let routesBySegmentCount: [Int: [Route]]

    init(routes: [Route]) {
        self.routes = routes
        routesBySegmentCount = Dictionary(grouping: routes, by: \.segments.count)
    }

    enum Match {
        case found(Route, PathParameters)
        case notFound
        case methodNotAllowed(allowed: [String])
    }

    func match(method: String, path: String) -> Match {
        let pathSegments = path.split(separator: "/", omittingEmptySubsequences: true)
        var allowed: [String] = []
        for route in routesBySegmentCount[pathSegments.count] ?? [] {
            guard let parameters = route.match(pathSegments) else { continue }
            if route.method == method || (method == "HEAD" && route.method == "GET") {
                return .found(route, parameters)
            }
            allowed.append(route.method)
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }

    /// Templates by method, as the OpenAPI document lists them.
    var templates: [String: Set<String>] {
        routes.reduce(into: [:]) { $0[$1.template, default: []].insert($1.method.lowercased()) }
    }
}
