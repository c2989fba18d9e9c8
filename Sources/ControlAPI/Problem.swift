import Lifecycle
import MicroHTTPD

/// An error answered as RFC 9457 problem details. `slug` becomes the problem `type`.
struct Problem: Error {
    let status: Int
    let slug: String
    let title: String
    let detail: String
    var headers: [(String, String)] = []
    /// Extension members (RFC 9457 §3.2), e.g. a queue position.
    var extensions: [String: Int] = [:]

    var response: HTTPResponse {
        var response = HTTPResponse.problem(
            status: status, title: title, detail: detail, type: "urn:procrefd:problem:\(slug)", extensions: extensions)
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
        case .leaseEnded: self.init(status: 404, slug: "lease-ended", title: "Lease Ended", detail: detail)
        case .serviceRunning: self.init(status: 409, slug: "service-running", title: "Service Running", detail: detail)
        case .serviceLeased: self.init(status: 409, slug: "service-leased", title: "Service Leased", detail: detail)
        case .serviceRequired: self.init(status: 409, slug: "service-required", title: "Service Required", detail: detail)
        case .groupFull: self.init(status: 429, slug: "group-full", title: "Group Full", detail: detail, headers: [("Retry-After", "1")])
        case .serviceRemoving: self.init(status: 409, slug: "service-removing", title: "Service Removing", detail: detail)
        case .serviceNotRunning: self.init(status: 409, slug: "service-not-running", title: "Service Not Running", detail: detail)
        case .serviceNotFailed: self.init(status: 409, slug: "service-not-failed", title: "Service Not Failed", detail: detail)
        case .serviceBusy: self.init(status: 409, slug: "service-busy", title: "Service Busy", detail: detail)
        case .definedInConfig: self.init(status: 409, slug: "defined-in-config", title: "Defined In Config", detail: detail)
        case .serviceFailed(let service, _):
            self.init(status: 503, slug: "service-failed", title: "Service Failed",
                      detail: detail + " (POST /v1/services/\(service)/reset, or procrefd service reset \(service))")
        case .userNotAllowed: self.init(status: 403, slug: "user-not-allowed", title: "Forbidden", detail: detail)
        case .processNotManaged: self.init(status: 403, slug: "process-not-managed", title: "Forbidden", detail: detail)
        case .programNotAllowed: self.init(status: 403, slug: "program-not-allowed", title: "Forbidden", detail: detail)
        case .noSuchProcess: self.init(status: 404, slug: "no-such-process", title: "No Such Process", detail: detail)
        case .timedOut:
            self.init(status: 503, slug: "timed-out", title: "Timed Out", detail: detail, headers: [("Retry-After", "1")])
        case .leaseNotRenewable: self.init(status: 409, slug: "lease-not-renewable", title: "Lease Not Renewable", detail: detail)
        case .clientNotRunning: self.init(status: 422, slug: "client-not-running", title: "Client Not Running", detail: detail)
        case .clientNotPermitted: self.init(status: 403, slug: "client-not-permitted", title: "Forbidden", detail: detail)
        case .tooManyLeases:
            self.init(status: 429, slug: "too-many-leases", title: "Too Many Leases", detail: detail, headers: [("Retry-After", "1")])
        case .userLimit:
            self.init(status: 429, slug: "user-limit", title: "User Limit", detail: detail, headers: [("Retry-After", "1")])
        case let .slotsExhausted(_, slots, position):
            self.init(status: 429, slug: "slots-exhausted", title: "Slots Exhausted", detail: detail, headers: [("Retry-After", "1")])
            extensions = ["position": position, "slots": slots]
        case .queueLeft: self.init(status: 409, slug: "queue-left", title: "Queue Left", detail: detail)
        case .tooManyServices: self.init(status: 409, slug: "too-many-services", title: "Too Many Services", detail: detail)
        case .idempotencyMismatch: self.init(status: 422, slug: "idempotency-key-reused", title: "Idempotency Key Reused", detail: detail)
        case .startFailed: self.init(status: 503, slug: "service-start-failed", title: "Service Start Failed", detail: detail)
        case .shuttingDown:
            self.init(status: 503, slug: "shutting-down", title: "Shutting Down", detail: detail, headers: [("Retry-After", "1")])
        case .auditUnavailable:
            self.init(status: 503, slug: "audit-unavailable", title: "Audit Unavailable", detail: detail, headers: [("Retry-After", "5")])
        case .kernel, .holder, .storage:
            self.init(status: 500, slug: "internal", title: "Internal Server Error", detail: detail)
        }
    }
}
