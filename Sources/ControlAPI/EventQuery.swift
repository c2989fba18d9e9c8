import AuditStore
import FoundationEssentials
import MicroHTTPD
import Posix
import Wire

/// `GET /v1/events`: filters, cursor pages, long-poll (`wait_ms`) and NDJSON streaming.
public enum EventQuery {
    static let maxPage = 1000
    public static let maxWaitMs = 60_000

    /// - Parameter holdLimitMs: the longest a long-poll is held, whatever `wait_ms` asks.
    /// - Parameter streams: the places for streams and long-polls (503 when none is free).
    static func respond(to request: HTTPRequest, store: AuditStore, holdLimitMs: Int, streams: HeldConnections) async throws -> HTTPResponse {
        let filter = try filter(request, now: store.signal.lastID)
        if (request.header("accept") ?? "").contains("application/x-ndjson") {
            guard filter.order == .asc else { throw Problem.invalidField("order", "a stream is in ascending order") }
            guard let stream = streams.hold(EventStream(store: store, filter: filter)) else { throw Problem.tooManyStreams(streams.limit) }
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/x-ndjson"), ("Cache-Control", "no-store")], stream: stream)
        }
        let waitMs = try request.integer("wait_ms", in: 0...maxWaitMs) ?? 0
        guard waitMs == 0 || filter.order == .asc else { throw Problem.invalidField("wait_ms", "only with order=asc") }
        if waitMs > 0 {
            guard streams.take() else { throw Problem.tooManyStreams(streams.limit) }
        }
        defer { if waitMs > 0 { streams.give() } }
        let deadline = ContinuousClock.now + .milliseconds(min(waitMs, holdLimitMs))
        var page = filter
        while true {
            let scanned = store.signal.lastID
            let events = try store.read { try $0.events(page) }
            let now = ContinuousClock.now
            if !events.isEmpty || now >= deadline || store.signal.isClosed {
                return json(EventPagePayload(events: events, filter: page, scanned: scanned))
            }
            // Nothing matched up to `scanned`: wait for anything newer.
            page.after = max(page.after, scanned)
            let leftMs = Int(((deadline - now) / .milliseconds(1)).rounded(.up))
            _ = await store.signal.wait(after: page.after, timeoutMs: leftMs)
        }
    }

    /// The query parameters of `GET /v1/events`.
    static let parameters: Set<String> = ["service", "lease", "kind", "pid", "user", "since", "until", "after", "before", "limit", "order", "wait_ms"]

    /// `now` is the newest committed event id: `after=now` starts there (follow from the end).
    static func filter(_ request: HTTPRequest, now: Int64) throws(Problem) -> EventFilter {
        var filter = EventFilter(service: request.query["service"], lease: request.query["lease"])
        filter.kinds = request.queryValues("kind")
        if let bad = filter.kinds.first(where: { !EventFilter.isValidKind($0) }) {
            throw .invalidField("kind", "\(bad.debugDescription) is not an event kind (e.g. lease.acquired) nor a family (e.g. lease.*)")
        }
        if let pid = try request.integer("pid", in: 1...Int(Int32.max)) { filter.pid = Int32(pid) }
        if let user = request.query["user"] {
            // A uid, or a name the passwd database knows: the events that user caused.
            guard let uid = UInt32(user) ?? Accounts.user(user).map({ UInt32($0.uid) }) else {
                throw .invalidField("user", "no such user: \(user) (a name or a uid)")
            }
            filter.uid = uid
        }
        filter.since = try date(request, "since")
        filter.until = try date(request, "until")
        if request.query["after"] == "now" {
            filter.after = now
        } else if let after = try request.integer("after", in: 0...Int.max) {
            filter.after = Int64(after)
        }
        if let before = try request.integer("before", in: 1...Int.max) { filter.before = Int64(before) }
        if let limit = try request.integer("limit", in: 1...maxPage) { filter.limit = limit }
        if let order = request.query["order"] {
            guard let value = EventFilter.Order(rawValue: order) else { throw .invalidField("order", "asc or desc") }
            filter.order = value
        }
        return filter
    }

    private static func date(_ request: HTTPRequest, _ name: String) throws(Problem) -> Date? {
        guard let text = request.query[name] else { return nil }
        guard let date = Timestamp.parse(text) else { throw .invalidField(name, "must be an RFC 3339 time, like 2026-11-22T03:12:00Z") }
        return date
    }
}

/// A page of events and the cursors to continue from.
public struct EventPagePayload: Encodable {
    let events: [Event]
    /// Ascending: pass as `after` for the next page (skips ids already known not to match).
    let nextAfter: Int64
    /// Descending: pass as `before` for the next page; null when the page was the last.
    let nextBefore: Int64?

    /// `scanned`: every id up to it is committed (the page may skip those that did not match).
    public init(events: [Event], filter: EventFilter, scanned: Int64) {
        self.events = events
        if filter.order == .asc {
            let full = events.count == filter.limit
            nextAfter = full ? (events.last?.id ?? filter.after) : max(events.last?.id ?? filter.after, scanned, filter.after)
            nextBefore = nil
        } else {
            nextAfter = max(events.first?.id ?? 0, filter.after)
            nextBefore = events.count == filter.limit ? events.last?.id : nil
        }
    }

    enum CodingKeys: String, CodingKey {
        case events
        case nextAfter = "next_after"
        case nextBefore = "next_before"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(events, forKey: .events)
        try c.encode(nextAfter, forKey: .nextAfter)
        try c.encode(nextBefore, forKey: .nextBefore)
    }
}
