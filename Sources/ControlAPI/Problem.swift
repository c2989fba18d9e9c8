import Lifecycle
import MicroHTTPD

/// An error answered as RFC 9457 problem details. `slug` becomes the problem `type`.
struct Problem: Error {
    let status: Int
    let slug: String
    let title: String
    let detail: String
    var headers: [(String, String)] = []

    var response: HTTPResponse {
        var response = HTTPResponse.problem(status: status, title: title, detail: detail, type: "urn:procrefd:problem:\(slug)")
        response.headers += headers
        return response
    }

    static func badRequest(_ detail: String) -> Problem {
        Problem(status: 400, slug: "bad-request", title: "Bad Request", detail: detail)
    }

    static func invalidField(_ field: String, _ message: String) -> Problem {
        Problem(status: 422, slug: "invalid-field", title: "Invalid Field", detail: "\(field): \(message)")
    }

}

extension Problem {
    /// The status each lifecycle error maps to.
    init(_ error: LifecycleError) {
        let detail = error.description
        switch error {
        case .invalidName: self.init(status: 400, slug: "invalid-name", title: "Invalid Name", detail: detail)
        case .invalidField: self.init(status: 422, slug: "invalid-field", title: "Invalid Field", detail: detail)
        case .unknownService: self.init(status: 404, slug: "unknown-service", title: "Unknown Service", detail: detail)
        case .unknownLease: self.init(status: 404, slug: "unknown-lease", title: "Unknown Lease", detail: detail)
        case .serviceRunning: self.init(status: 409, slug: "service-running", title: "Service Running", detail: detail)
        case .leaseNotRenewable: self.init(status: 409, slug: "lease-not-renewable", title: "Lease Not Renewable", detail: detail)
        case .clientNotRunning: self.init(status: 422, slug: "client-not-running", title: "Client Not Running", detail: detail)
        case .tooManyLeases:
            self.init(status: 429, slug: "too-many-leases", title: "Too Many Leases", detail: detail, headers: [("Retry-After", "1")])
        case .startFailed: self.init(status: 503, slug: "service-start-failed", title: "Service Start Failed", detail: detail)
        case .shuttingDown:
            self.init(status: 503, slug: "shutting-down", title: "Shutting Down", detail: detail, headers: [("Retry-After", "1")])
        case .kernel, .holder, .storage:
            self.init(status: 500, slug: "internal", title: "Internal Server Error", detail: detail)
        }
    }
}
