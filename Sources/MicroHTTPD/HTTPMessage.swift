import Foundation

/// Which listener a request arrived on. Authorization differs: the Unix socket is guarded by
/// its file mode, TCP by a bearer token.
public enum Transport: String, Sendable {
    case tcp
    case unix
}

/// A complete HTTP request (body fully read).
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query string.
    public var path: String
    public var query: [String: String]
    /// Header names lower-cased.
    public var headers: [String: String]
    public var body: [UInt8]
    public var transport: Transport
    /// "127.0.0.1:port" or "unix".
    public var remoteAddress: String

    public init(
        method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:],
        body: [UInt8] = [], transport: Transport = .tcp, remoteAddress: String = "test"
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.transport = transport
        self.remoteAddress = remoteAddress
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// An HTTP response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// An RFC 9457 problem details response.
    public static func problem(status: Int, title: String, detail: String, type: String = "about:blank") -> HTTPResponse {
        let object: [String: Any] = ["type": type, "title": title, "status": status, "detail": detail]
        let body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return HTTPResponse(status: status, headers: [("Content-Type", "application/problem+json")], body: Array(body))
    }
}

/// Answers requests. `respondImmediately` runs on an HTTP thread and must not block; return
/// nil to have `respond` run asynchronously while the connection is suspended.
public protocol HTTPResponder: Sendable {
    func respondImmediately(to request: HTTPRequest) -> HTTPResponse?
    func respond(to request: HTTPRequest) async -> HTTPResponse
}
