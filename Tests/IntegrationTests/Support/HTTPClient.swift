import Foundation
import Glibc

/// A minimal HTTP/1.1 client over TCP loopback or a Unix socket (one request per
/// connection), so tests speak to procrefd exactly as curl does.
struct TestHTTPClient: Sendable {
    enum Endpoint: Sendable {
        case tcp(port: UInt16)
        case unix(path: String)
    }

    struct Response: Sendable {
        let status: Int
        let headers: [String: String]
        let body: Data

        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
        var contentType: String { headers["content-type"] ?? "" }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let endpoint: Endpoint
    var token: String?

    func get(_ path: String) throws -> Response { try send("GET", path) }

    func send(_ method: String, _ path: String, json: Any? = nil, rawBody: String? = nil, headers: [String: String] = [:]) throws -> Response {
        var body = Data()
        if let rawBody { body = Data(rawBody.utf8) }
        if let json { body = try JSONSerialization.data(withJSONObject: json) }
        // `headers` may name another Host (a DNS-rebinding page's, say).
        let host = headers.first { $0.key.lowercased() == "host" } == nil ? "Host: localhost\r\n" : ""
        var head = "\(method) \(path) HTTP/1.1\r\n\(host)Connection: close\r\nContent-Length: \(body.count)\r\n"
        if !body.isEmpty { head += "Content-Type: application/json\r\n" }
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        _ = ignoreBrokenPipes
        let fd = try connect()
        defer { close(fd) }
        try writeAll(fd, Data((head + "\r\n").utf8) + body)
        return try parse(readAll(fd))
    }

    /// Sends `head` alone (a request whose body would follow) and reads until the server
    /// closes the connection: the answer it gave before any body was sent. Throws when the
    /// server keeps waiting for the body instead (the read times out).
    func sendHeadOnly(_ head: String, timeoutSeconds: Int = 30) throws -> Response {
        _ = ignoreBrokenPipes
        let fd = try connect()
        defer { close(fd) }
        try writeAll(fd, Data(head.utf8))
        return try parse(readAll(fd, timeoutSeconds: timeoutSeconds))
    }

    private func connect() throws -> Int32 {
        switch endpoint {
        case .tcp(let port):
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { close(fd); throw Failure(description: "connect tcp \(port): errno \(errno)") }
            return fd
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (index, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
            }
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else { close(fd); throw Failure(description: "connect unix \(path): errno \(errno)") }
            return fd
        }
    }

    private func writeAll(_ fd: Int32, _ data: Data) throws {
        var offset = 0
        let bytes = [UInt8](data)
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw Failure(description: "write: errno \(errno)") }
            offset += n
        }
    }

    private func readAll(_ fd: Int32, timeoutSeconds: Int = 30) throws -> [UInt8] {
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { throw Failure(description: "read: errno \(errno)") }
            if n == 0 { return result }
            result += chunk[0..<n]
        }
    }

    private func parse(_ bytes: [UInt8]) throws -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = (0...(max(0, bytes.count - 4))).first(where: { Array(bytes[$0..<min($0 + 4, bytes.count)]) == separator }) else {
            throw Failure(description: "no HTTP header in \(bytes.count) bytes")
        }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw Failure(description: "bad status line \(lines[0])") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(bytes[(end + 4)...])
        if headers["transfer-encoding"] == "chunked" { body = Self.dechunk(body) }
        return Response(status: status, headers: headers, body: Data(body))
    }

    /// The bytes of a complete chunked body (what arrived of it, when cut short).
    static func dechunk(_ bytes: [UInt8]) -> [UInt8] {
        var result: [UInt8] = []
        var index = 0
        while let lineEnd = bytes[index...].firstIndex(of: 10) {
            let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16), size > 0 else { break }
            let start = lineEnd + 1
            let stop = min(bytes.count, start + size)
            result += bytes[start..<stop]
            index = min(bytes.count, stop + 2)
        }
        return result
    }
}

/// A write to a connection the server already closed (a refused oversized body, say) must
/// fail that request with EPIPE, not kill the whole test process with SIGPIPE.
private let ignoreBrokenPipes: Void = { signal(SIGPIPE, SIG_IGN) }()
