import Foundation
import Lifecycle
import Posix

/// The CLI's side of the REST API: one request per connection, over the daemon's Unix
/// socket (the admin's way in) or TCP with a bearer token.
struct APIClient {
    enum Endpoint {
        case unix(path: String)
        case tcp(host: String, port: Int)
    }

    struct Response {
        let status: Int
        let headers: [String: String]
        let body: [UInt8]

        var text: String { String(decoding: body, as: UTF8.self) }
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(body)) }
        var object: [String: Any] { json as? [String: Any] ?? [:] }
    }

    let endpoint: Endpoint
    let token: String?

    /// Sends one request; `timeoutMs` bounds the whole exchange (an acquire may wait for a
    /// service to start).
    func send(_ method: String, _ path: String, json: Any? = nil, rawBody: [UInt8]? = nil, timeoutMs: Int = 120_000)
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

    /// GETs a streamed (chunked) answer and hands each piece of its body to `received`, until
    /// the daemon ends it or the connection closes. An error answer is thrown as usual.
    func follow(_ path: String, received: ([UInt8]) -> Void) throws(ClientError) {
        var head: [UInt8] = []
        var answer: Response?
        var chunks = ChunkedDecoder()
        var failure: ClientError?
        do {
            try SocketExchange.stream(destination, request: try request("GET", path), timeoutMs: 10_000) { bytes in
                var body = bytes
                if answer == nil {
                    head += bytes
                    guard let response = try? Self.parse(head) else { return true }  // headers not complete yet
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
            guard let data = try? JSONSerialization.data(withJSONObject: json) else { throw .usage("cannot encode the request body") }
            body = Array(data)
        }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        if !body.isEmpty { head += "Content-Type: application/json\r\n" }
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        return Array((head + "\r\n").utf8) + body
    }

    /// Sends and returns the JSON object of a 2xx answer; a problem+json answer becomes
    /// `ClientError.problem`.
    func call(_ method: String, _ path: String, json: Any? = nil, timeoutMs: Int = 120_000) throws(ClientError) -> Response {
        let response = try send(method, path, json: json, timeoutMs: timeoutMs)
        guard (200..<300).contains(response.status) else { throw .problem(response) }
        return response
    }

    static func parse(_ reply: [UInt8]) throws(ClientError) -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = reply.indices.first(where: { reply[$0...].starts(with: separator) }) else {
            throw .protocolError("no complete HTTP response")
        }
        let lines = String(decoding: reply[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw .protocolError("bad status line") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(reply[(end + 4)...])
        if let length = headers["content-length"].flatMap(Int.init), length < body.count { body = Array(body.prefix(length)) }
        return Response(status: status, headers: headers, body: body)
    }

    private func describe(_ endpoint: Endpoint) -> String {
        switch endpoint {
        case .unix(let path): return "unix:\(path)"
        case let .tcp(host, port): return "http://\(host):\(port)"
        }
    }
}

/// Why a client command failed, and the exit code it ends with.
enum ClientError: Error, CustomStringConvertible {
    /// The daemon could not be reached.
    case unreachable(String)
    /// The daemon answered with an error (RFC 9457 problem).
    case problem(APIClient.Response)
    case protocolError(String)
    case usage(String)

    var description: String {
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
    var exitCode: Int32 {
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

/// Decodes an HTTP/1.1 chunked body as its bytes arrive.
struct ChunkedDecoder {
    private var buffer: [UInt8] = []
    /// The last (zero-size) chunk came, or the framing broke.
    private(set) var finished = false

    /// Adds what was read; returns the body bytes now complete.
    mutating func feed(_ bytes: [UInt8]) -> [UInt8] {
        buffer += bytes
        var body: [UInt8] = []
        while !finished, let lineEnd = buffer.indices.first(where: { buffer[$0...].starts(with: [13, 10]) }) {
            let sizeText = String(decoding: buffer[..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else {
                finished = true
                break
            }
            let start = lineEnd + 2
            guard buffer.count >= start + size + 2 else { break }
            body += buffer[start..<(start + size)]
            buffer.removeFirst(start + size + 2)
        }
        return body
    }
}
