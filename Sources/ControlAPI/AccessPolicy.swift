import MicroHTTPD

/// Who may do what. Over the Unix socket: everything (its file mode is the guard). Over TCP:
/// changes need `Authorization: Bearer <token>`; reads need nothing, or — when a read token
/// is configured — either token (`GET /v1/health` and the dashboard's files always answer).
public struct AccessPolicy: Sendable {
    public let token: String
    public let readToken: String?

    public init(token: String, readToken: String? = nil) {
        self.token = token
        self.readToken = readToken
    }

    func allows(_ request: HTTPRequest) -> Bool {
        if request.transport == .unix { return true }
        let presented = Self.bearer(request)
        if request.method == "GET" || request.method == "HEAD" {
            // The health check and the dashboard's static files answer anyone; the dashboard
            // then reads the API with a token like any client.
            guard let readToken, request.path != "/v1/health", !Dashboard.serves(request.path) else { return true }
            return presented.map { Self.constantTimeEqual($0, Array(token.utf8)) || Self.constantTimeEqual($0, Array(readToken.utf8)) } ?? false
        }
        return presented.map { Self.constantTimeEqual($0, Array(token.utf8)) } ?? false
    }

    /// The admin: the Unix socket, or TCP with the admin token. Only the admin sees
    /// secrets (service `env` values).
    func isAdmin(_ request: HTTPRequest) -> Bool {
        if request.transport == .unix { return true }
        return Self.bearer(request).map { Self.constantTimeEqual($0, Array(token.utf8)) } ?? false
    }

    private static func bearer(_ request: HTTPRequest) -> [UInt8]? {
        guard let header = request.header("authorization"), header.hasPrefix("Bearer ") else { return nil }
        return Array(header.utf8.dropFirst(7))
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess matched.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}
