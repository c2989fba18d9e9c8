import Foundation
import Glibc
import ProcrefdClient

/// A minimal HTTP/1.1 client over TCP loopback or a Unix socket (one request per
/// connection), so tests speak to procrefd exactly as curl does. The request and answer
/// formats, and the `APIRequester` protocol, are the CLI's (ProcrefdClient).
struct TestHTTPClient: APIRequester {
    enum Endpoint: Sendable {
        case tcp(port: UInt16)
        case unix(path: String)
    }

    typealias Response = APIResponse

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let endpoint: Endpoint
    var token: String?

    func send(_ method: String, _ path: String, json: Any?, headers: [String: String]) throws -> Response {
        try send(method, path, json: json, rawBody: nil, headers: headers)
    }

    func send(_ method: String, _ path: String, json: Any? = nil, rawBody: String? = nil, headers: [String: String] = [:]) throws -> Response {
        var body: [UInt8] = []
        if let rawBody { body = Array(rawBody.utf8) }
        if let json { body = Array(try JSONSerialization.data(withJSONObject: json)) }
        // `headers` may name another Host (a DNS-rebinding page's, say).
        _ = ignoreBrokenPipes
        let fd = try connect()
        defer { close(fd) }
        try writeAll(fd, Data(APIResponse.request(method, path, body: body, token: token, headers: headers)))
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
        guard let response = APIResponse.parse(bytes) else { throw Failure(description: "no HTTP response in \(bytes.count) bytes") }
        return response
    }
}

/// A write to a connection the server already closed (a refused oversized body, say) must
/// fail that request with EPIPE, not kill the whole test process with SIGPIPE.
private let ignoreBrokenPipes: Void = { signal(SIGPIPE, SIG_IGN) }()
