import FoundationEssentials
import Posix

/// The CLI's side of the REST API: one request per connection, over the daemon's Unix
/// socket (the admin's way in) or TCP with a bearer token.
public struct APIClient: APIRequester {
    public enum Endpoint: Sendable {
        case unix(path: String)
        case tcp(host: String, port: Int)
    }

    public typealias Response = APIResponse

    public let endpoint: Endpoint
    public let token: String?

    public init(endpoint: Endpoint, token: String?) {
        self.endpoint = endpoint
        self.token = token
    }

    /// Sends one request; `timeoutMs` bounds the whole exchange (an acquire may wait for a
    /// service to start).
    public func send(_ method: String, _ path: String, json: Any? = nil, rawBody: [UInt8]? = nil, timeoutMs: Int = 120_000)
        throws(ClientError) -> Response
    {
        let reply: [UInt8]
        do {
            reply = try SocketExchange.exchange(
                destination, request: try request(method, path, json: json, rawBody: rawBody), timeoutMs: timeoutMs, limit: 64 << 20)
        } catch let error as ClientError {
            throw error
        } catch {
            throw .unreachable("\(describe(endpoint)): \(error)")
        }
        return try Self.parse(reply)
    }

    /// `APIRequester`: one request, with the CLI's two-minute bound.
    public func send(_ method: String, _ path: String, json: Any?, headers: [String: String]) throws -> APIResponse {
        guard headers.isEmpty else { throw ClientError.usage("the CLI sends no headers of its own") }
        return try send(method, path, json: json)
    }

    /// GETs a streamed (chunked) answer and hands each piece of its body to `received`, until
    /// the daemon ends it or the connection closes. An error answer is thrown as usual.
    public func follow(_ path: String, received: ([UInt8]) -> Void) throws(ClientError) {
        var head: [UInt8] = []
        var answer: Response?
        var chunks = ChunkedDecoder()
        var failure: ClientError?
        do {
            try SocketExchange.stream(destination, request: try request("GET", path), timeoutMs: 10_000) { bytes in
                var body = bytes
                if answer == nil {
                    head += bytes
                    guard let response = APIResponse.parse(head, decodingChunks: false) else { return true }  // headers not complete yet
                    answer = response
                    guard response.status == 200, response.headers["transfer-encoding"] == "chunked" else {
                        if let length = response.headers["content-length"].flatMap(Int.init), response.body.count < length { answer = nil; return true }
                        failure = (200..<300).contains(response.status) ? nil : .problem(response)
                        if failure == nil { received(response.body) }
                        return false
                    }
                    body = response.body
                }
                received(chunks.feed(body))
                return !chunks.finished
            }
        } catch let error as ClientError {
            throw error
        } catch {
            throw .unreachable("\(describe(endpoint)): \(error)")
        }
        if let failure { throw failure }
    }

    private var destination: SocketExchange.Destination {
        switch endpoint {
        case .unix(let path): return .unix(path: path)
        case let .tcp(host, port): return .tcp(host: host, port: port)
        }
    }

    private func request(_ method: String, _ path: String, json: Any? = nil, rawBody: [UInt8]? = nil) throws(ClientError) -> [UInt8] {
        var body: [UInt8] = rawBody ?? []
        if let json {
            guard let data = try? JSONValue.encode(json) else { throw .usage("cannot encode the request body") }
            body = data
        }
        return APIResponse.request(method, path, body: body, token: token)
    }

    /// Sends and returns the JSON object of a 2xx answer; a problem+json answer becomes
    /// `ClientError.problem`.
    public func call(_ method: String, _ path: String, json: Any? = nil, timeoutMs: Int = 120_000) throws(ClientError) -> Response {
        let response = try send(method, path, json: json, timeoutMs: timeoutMs)
        guard (200..<300).contains(response.status) else { throw .problem(response) }
        return response
    }

    public static func parse(_ reply: [UInt8]) throws(ClientError) -> Response {
        guard let response = APIResponse.parse(reply) else { throw .protocolError("no complete HTTP response") }
        return response
    }

    private func describe(_ endpoint: Endpoint) -> String {
        switch endpoint {
        case .unix(let path): return "unix:\(path)"
        case let .tcp(host, port): return "http://\(host):\(port)"
        }
    }
}

/// Why a client command failed, and the exit code it ends with.
public enum ClientError: Error, CustomStringConvertible {
    /// The daemon could not be reached.
    case unreachable(String)
    /// The daemon answered with an error (RFC 9457 problem).
    case problem(APIClient.Response)
    case protocolError(String)
    case usage(String)

    public var description: String {
        switch self {
        case .unreachable(let detail): return "procrefd is not reachable (\(detail))"
        case .problem(let response):
            let problem = response.object
            let title = problem["title"] as? String ?? "HTTP \(response.status)"
            let detail = problem["detail"] as? String ?? response.text
            return "\(title) (\(response.status)): \(detail)"
        case .protocolError(let detail): return "unexpected answer: \(detail)"
        case .usage(let detail): return detail
        }
    }

    /// Documented exit codes: 3 daemon not reachable, 4 no such service, lease or process,
    /// 5 refused (limits, conflicts, failed services, permissions), 1 anything else.
    public var exitCode: Int32 {
        switch self {
        case .unreachable: return 3
        case .problem(let response):
            switch response.status {
            case 404: return 4
            case 401, 403, 409, 429, 503: return 5
            default: return 1
            }
        case .protocolError, .usage: return 1
        }
    }
}
