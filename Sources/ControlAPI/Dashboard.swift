import MicroHTTPD
import Wire

/// The dashboard: one page and its script and style sheet, embedded in the binary at build
/// time (`Dashboard/`, by the EmbedDashboard plugin) and served at `/` and `/ui/FILE`.
/// It is the API's client like any other: same origin, no CORS, its data through `/v1/...`.
enum Dashboard {
    struct Asset: Sendable {
        let contentType: String
        let body: [UInt8]
        let etag: String
    }

    static let assets: [String: Asset] = Dictionary(uniqueKeysWithValues: embeddedDashboard.map { file in
        let body = Array(file.text.utf8)
        let type: String
        switch file.name.split(separator: ".").last {
        case "html": type = "text/html; charset=utf-8"
        case "css": type = "text/css; charset=utf-8"
        default: type = "text/javascript; charset=utf-8"
        }
        return (file.name, Asset(contentType: type, body: body, etag: "\"" + ETag.of(body) + "\""))
    })

    /// No inline script, no eval, nothing from elsewhere, never in a frame.
    static let securityHeaders: [(String, String)] = [
        ("Content-Security-Policy",
         "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
    ]

    /// Whether `path` is one of the dashboard's files (served without a token).
    static func serves(_ path: String) -> Bool { path == "/" || path.hasPrefix("/ui/") }

    static func response(file name: String, to request: HTTPRequest) -> HTTPResponse {
        guard let asset = assets[name == "" ? "index.html" : name] else {
            return Problem(status: 404, slug: "not-found", title: "Not Found", detail: "no dashboard file \(name)").response
        }
        var headers = securityHeaders + [("ETag", asset.etag)]
        if let match = request.header("if-none-match"), match == asset.etag { return HTTPResponse(status: 304, headers: headers) }
        headers.append(("Content-Type", asset.contentType))
        return HTTPResponse(status: 200, headers: headers, body: asset.body)
    }
}
