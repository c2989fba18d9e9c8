import AuditStore
import FoundationEssentials
import Glibc
import Lifecycle
import LifecycleModel
import MicroHTTPD
import Synchronization
import Wire

/// `GET /v1/status[?service=]`: the daemon envelope around every service's summary.
///
/// This is the scrape path, so the JSON is written by hand (keys sorted, as everywhere)
/// and the services part of the last full answer is kept with its entity tag: while the
/// services' stamps (the versions of their published state, their kernel counts re-read
/// every time, their lease counts) compare equal, a scrape copies bytes instead of
/// building 100 summaries and writing them again. The weak ETag covers everything but
/// the uptime, so a scraper polling with If-None-Match gets 304 until something changes.
final class StatusDocument: Sendable {
    private struct Rendered {
        /// What it was rendered from (taken before the summaries: a change in between only
        /// costs a render more).
        let stamps: [ServiceStamp]?
        let servicesJSON: [UInt8]
        let tag: String
    }

    private let coordinator: any LifecycleCore
    /// Records waiting for storage (a full disk): the audit log is then `degraded`.
    private let auditWaiting: @Sendable () -> Int
    /// Monotonic seconds at start, for the uptime.
    private let started: TimeInterval
    private let head: [UInt8]
    private let middle: [UInt8]
    private let tail: [UInt8]
    private let lastFullAnswer = Mutex<Rendered?>(nil)

    init(coordinator: any LifecycleCore, startedAt: Date, version: String, auditWaiting: @escaping @Sendable () -> Int) {
        self.coordinator = coordinator
        self.auditWaiting = auditWaiting
        started = ProcessInfo.processInfo.systemUptime
        head = Array(#","pid":\#(getpid()),"services":"#.utf8)
        middle = Array(#","started_at":"\#(Timestamp.format(startedAt))","uptime_ms":"#.utf8)
        tail = Array(#","version":"\#(version)"}"#.utf8) + [10]
    }

    func response(to request: HTTPRequest) throws -> HTTPResponse {
        let rendered: Rendered
        if let only = request.query["service"] {
            let summaries = coordinator.serviceSummaries().filter { $0.name == only }
            if summaries.isEmpty { throw Problem(LifecycleError.unknownService(only)) }
            rendered = render(summaries, stamps: nil)
        } else {
            let stamps = coordinator.serviceStamps()
            if let stamps, let cached = lastFullAnswer.withLock({ $0 }), cached.stamps == stamps {
                rendered = cached
            } else {
                rendered = render(coordinator.serviceSummaries(), stamps: stamps)
                lastFullAnswer.withLock { $0 = rendered }
            }
        }
        // The audit log's state is part of what the tag stands for.
        let waiting = auditWaiting()
        let tag = waiting == 0 ? rendered.tag : String(rendered.tag.dropLast()) + "-a\(waiting)\""
        if let match = request.header("if-none-match"), ETag.matchesWeakly(match, tag) {
            return HTTPResponse(status: 304, headers: [("ETag", tag)])
        }
        let audit = Array(#"{"audit":"\#(waiting == 0 ? "ok" : "degraded")","audit_waiting":\#(waiting)"#.utf8)
        let uptime = Array(String(Int64((ProcessInfo.processInfo.systemUptime - started) * 1000)).utf8)
        var body: [UInt8] = []
        body.reserveCapacity(audit.count + head.count + rendered.servicesJSON.count + middle.count + uptime.count + tail.count)
        body += audit
        body += head
        body += rendered.servicesJSON
        body += middle
        body += uptime
        body += tail
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/json"), ("ETag", tag)], body: body)
    }

    private func render(_ summaries: [ServiceSummary], stamps: [ServiceStamp]?) -> Rendered {
        var text = "["
        for (index, service) in summaries.enumerated() {
            if index > 0 { text += "," }
            let runAs = service.runAs
            text += #"{"caps":{"cpu_max":\#(runAs.cpuMax.map { "\($0)" } ?? "null"),"memory_max":\#(runAs.memoryMax.map(String.init) ?? "null")"#
                + #","pids_max":\#(runAs.pidsMax.map(String.init) ?? "null")},"count":\#(service.count.map(String.init) ?? "null"),"failure_reason":"#
                + (service.failureReason.map(JSONText.quoted) ?? "null") + #","group":"# + (runAs.group.map(JSONText.quoted) ?? "null")
                + #","last_health":"# + (service.lastHealth.map(JSONText.quoted) ?? "null")
                + #","leases":\#(service.leases),"name":\#(JSONText.quoted(service.name)),"pid":"#
                + (service.pid.map(String.init) ?? "null") + #","queued":\#(service.queued),"restarts":\#(service.restarts),"slots":"#
                + (service.slots.map(String.init) ?? "null") + #","state":"\#(service.state.rawValue)""#
                + #","state_since":"\#(Timestamp.format(service.stateSince))","user":"# + (runAs.user.map(JSONText.quoted) ?? "null") + "}"
        }
        let servicesJSON = Array((text + "]").utf8)
        let tag = "W/\"" + ETag.of(head + servicesJSON + middle + tail) + "\""
        return Rendered(stamps: stamps, servicesJSON: servicesJSON, tag: tag)
    }
}
