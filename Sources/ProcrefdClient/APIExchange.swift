import FoundationEssentials
import Wire

/// One request to procrefd's API, and its answer, however the request travels: the CLI's
/// `APIClient` (over the Unix socket or TCP, with a token) and the tests' raw HTTP client
/// both speak it, so code written against it runs with either (as Hummingbird's
/// `TestClientProtocol` serves its router and live tests alike).
public protocol APIRequester: Sendable {
    /// Sends `method path` with `json` as the body (none when nil) and `headers` beside the
    /// client's own, and returns the answer, whatever its status.
    func send(_ method: String, _ path: String, json: Any?, headers: [String: String]) throws -> APIResponse
}

extension APIRequester {
    public func get(_ path: String) throws -> APIResponse { try send("GET", path, json: nil, headers: [:]) }
}

/// An HTTP/1.1 answer of procrefd: status, headers (names lower-cased) and body (chunked
/// bodies decoded).
public struct APIResponse: Sendable {
    public let status: Int
    public let headers: [String: String]
    public let body: [UInt8]

    public init(status: Int, headers: [String: String], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
    /// The body's JSON object (empty when it is not one); null members are left out.
    public var object: [String: Any] { (try? JSONValue.parse(body))?.any as? [String: Any] ?? [:] }
    public var contentType: String { headers["content-type"] ?? "" }

    /// Parses an answer (whole, once the connection closed). nil when it has no complete
    /// head. A chunked body is decoded unless `decodingChunks` is false (a stream, read on).
    public static func parse(_ reply: [UInt8], decodingChunks: Bool = true) -> APIResponse? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = reply.indices.first(where: { reply[$0...].starts(with: separator) }) else { return nil }
        let lines = String(decoding: reply[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmed()
        }
        var body = Array(reply[(end + 4)...])
        if headers["transfer-encoding"] == "chunked" {
            guard decodingChunks else { return APIResponse(status: status, headers: headers, body: body) }
            var decoder = ChunkedDecoder()
            body = decoder.feed(body) + decoder.partialChunk  // what arrived, when cut short
        } else if let length = headers["content-length"].flatMap(Int.init), length < body.count {
            body = Array(body.prefix(length))
        }
        return APIResponse(status: status, headers: headers, body: body)
    }

    /// The request's bytes: one request per connection, `Host: localhost` unless `headers`
    /// name another, a bearer `token` when given.
    public static func request(_ method: String, _ path: String, body: [UInt8], token: String?, headers: [String: String] = [:]) -> [UInt8] {
        let host = headers.keys.contains { $0.lowercased() == "host" } ? "" : "Host: localhost\r\n"
        var head = "\(method) \(path) HTTP/1.1\r\n\(host)Connection: close\r\nContent-Length: \(body.count)\r\n"
        if !body.isEmpty { head += "Content-Type: application/json\r\n" }
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
        return Array((head + "\r\n").utf8) + body
    }
}

/// Decodes an HTTP/1.1 chunked body as its bytes arrive.
public struct ChunkedDecoder: Sendable {
    private var buffer: [UInt8] = []
    /// The last (zero-size) chunk came, or the framing broke.
    public private(set) var finished = false

    public init() {}

    /// Adds what was read; returns the body bytes now complete.
    public mutating func feed(_ bytes: [UInt8]) -> [UInt8] {
        buffer += bytes
        var body: [UInt8] = []
        while !finished, let lineEnd = buffer.indices.first(where: { buffer[$0...].starts(with: [13, 10]) }) {
            let sizeText = String(decoding: buffer[..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmed(), radix: 16), size > 0 else {
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

    /// What arrived of a chunk not yet complete.
    public var partialChunk: [UInt8] {
        guard !finished, let lineEnd = buffer.indices.first(where: { buffer[$0...].starts(with: [13, 10]) }) else { return [] }
        let sizeText = String(decoding: buffer[..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
        guard let size = Int(sizeText.trimmed(), radix: 16), size > 0 else { return [] }
        return Array(buffer[(lineEnd + 2)...].prefix(size))
    }
}
