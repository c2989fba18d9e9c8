import MicroHTTPD

/// Keeps web pages out. A page on another site can reach loopback in two ways: by DNS
/// rebinding (its own name re-resolved to 127.0.0.1, so the browser calls procrefd "same
/// origin" and lets the page read the answers), and by a cross-site request that needs no
/// preflight (a `<form method=POST>`). The first is stopped by the `Host` check, the second
/// by the `Origin` checks.
public struct BrowserGuard: Sendable, Equatable {
    /// Host names (lower case, no port) besides the loopback ones: `[security] allowed_hosts`.
    public var allowedHosts: Set<String>
    /// The TCP listen address, which a client may name as the host.
    public var listenHost: String?

    public init(allowedHosts: [String] = [], listenHost: String? = nil) {
        self.allowedHosts = Set(allowedHosts.map { Self.hostPart(of: $0) })
        self.listenHost = listenHost.map { Self.hostPart(of: $0.contains(":") && !$0.hasPrefix("[") ? "[\($0)]" : $0) }
    }

    /// The refusal for `request`, or nil when it may go on.
    /// - 421 when `Host` names none of the loopback names, the listen address or an allowed host;
    /// - 403 on the Unix socket for anything a browser sent (`Origin`, `Sec-Fetch-Site`): the
    ///   socket serves programs, and its callers hold the socket's rights;
    /// - 403 over TCP for a change whose `Origin` is not the `Host` it was sent to.
    func refusal(for request: HTTPRequest) -> Problem? {
        guard let host = request.header("host"), accepts(host: host) else {
            return Problem(
                status: 421, slug: "misdirected-request", title: "Misdirected Request",
                detail: "Host \(request.header("host").map { "'\($0)'" } ?? "(none)") is not this daemon: use localhost, 127.0.0.1 or [::1], or list the name in [security] allowed_hosts")
        }
        let origin = request.header("origin")
        if request.transport == .unix {
            guard origin == nil, request.header("sec-fetch-site") == nil else {
                return Problem(
                    status: 403, slug: "browser-refused", title: "Forbidden",
                    detail: "the Unix socket serves programs, not browsers (the request carried Origin or Sec-Fetch-Site); a page uses TCP with a token")
            }
            return nil
        }
        if let origin, request.method != "GET", request.method != "HEAD", !Self.origin(origin, matches: host) {
            return Problem(
                status: 403, slug: "cross-origin-refused", title: "Forbidden",
                detail: "Origin \(origin) is not the origin of this daemon (Host \(host)): cross-site changes are refused")
        }
        return nil
    }

    /// Whether a `Host` header value (`name`, `name:port`, `[v6]:port`) names this daemon.
    func accepts(host value: String) -> Bool {
        if Self.isPlainLoopback(value) { return true }  // what clients send: no allocation
        let host = Self.hostPart(of: value)
        return Self.isLoopback(host) || host == listenHost || allowedHosts.contains(host)
    }

    /// The host of `name[:port]` or `[v6][:port]`, lower case, IPv6 kept in brackets.
    static func hostPart(of value: String) -> String {
        let text = value.lowercased()
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return text }
            return String(text[...close])
        }
        if let colon = text.firstIndex(of: ":"), text.lastIndex(of: ":") == colon { return String(text[..<colon]) }
        return text
    }

    /// `localhost`, `127.0.0.1` or `[::1]`, with an optional `:PORT`, exactly as written.
    static func isPlainLoopback(_ value: String) -> Bool {
        for name in ["127.0.0.1", "localhost", "[::1]"] {
            guard value.utf8.starts(with: name.utf8) else { continue }
            let rest = value.utf8.dropFirst(name.utf8.count)
            guard let colon = rest.first else { return true }
            return colon == UInt8(ascii: ":") && rest.count > 1 && rest.dropFirst().allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        }
        return false
    }

    /// `localhost`, an address in 127.0.0.0/8 (dotted decimal), or `[::1]`.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "[::1]" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "127" else { return false }
        return parts.allSatisfy { $0.count <= 3 && !$0.isEmpty && $0.allSatisfy(\.isNumber) && Int($0)! <= 255 }
    }

    /// Whether `Origin: scheme://authority` names `host` (a default port may be left out
    /// on either side).
    static func origin(_ origin: String, matches host: String) -> Bool {
        let text = origin.lowercased()
        guard let separator = text.firstRange(of: "://") else { return false }
        let scheme = text[..<separator.lowerBound]
        let authority = String(text[separator.upperBound...])
        let defaultPort = scheme == "https" ? ":443" : ":80"
        func normalized(_ value: String) -> String {
            value.hasSuffix(defaultPort) ? String(value.dropLast(defaultPort.count)) : value
        }
        return normalized(authority) == normalized(host.lowercased())
    }
}
