// The hand-written stand-ins on the hot path beside the library calls they replace (the
// text formats against Foundation, the event row's binding against `execute(arguments:)`): time per call,
// printed (never asserted). `make bench` runs it (bench/run.py) and
// writes the table into bench/RESULTS.md; a stand-in stays only while it wins here.
import AuditStore
import ControlAPI
import Foundation
import Wire

/// Median of five rounds of `iterations` calls, in ns per call. `sink` keeps the results
/// alive so the optimizer cannot drop the calls.
func nanosecondsPerCall(_ iterations: Int, _ body: (Int) -> Int) -> Double {
    var rounds: [Double] = []
    var sink = 0
    for _ in 0..<5 {
        let start = DispatchTime.now().uptimeNanoseconds
        for index in 0..<iterations { sink &+= body(index) }
        rounds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / Double(iterations))
    }
    if sink == 42 { print("") }
    return rounds.sorted()[2]
}

/// A lease answer's fields, as the API writes them (sorted keys, nulls written).
struct LeaseAnswer: Encodable {
    let id: String, service: String, holder: String
    let holder_pid: Int64, client_pid: Int64?, ttl_ms: Int64?
    let acquired_at: String, expires_at: String?
    let count: Int, started: Bool, waited_ms: Int64?

    func encode(to encoder: Encoder) throws {
        enum Key: String, CodingKey { case id, service, holder, holder_pid, client_pid, ttl_ms, acquired_at, expires_at, count, started, waited_ms }
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(id, forKey: .id); try c.encode(service, forKey: .service); try c.encode(holder, forKey: .holder)
        try c.encode(holder_pid, forKey: .holder_pid); try c.encode(client_pid, forKey: .client_pid); try c.encode(ttl_ms, forKey: .ttl_ms)
        try c.encode(acquired_at, forKey: .acquired_at); try c.encode(expires_at, forKey: .expires_at)
        try c.encode(count, forKey: .count); try c.encode(started, forKey: .started); try c.encode(waited_ms, forKey: .waited_ms)
    }
}

let iterations = 50_000
let dates = (0..<1_024).map { Date(timeIntervalSince1970: 1_795_000_000 + Double($0) * 0.137) }
let isoStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
let ids = (0..<1_024).map { "l_\(String(1_795_000_000_000_000 + $0, radix: 16))0a1b2c3d" }
let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return encoder
}()

func answer(_ index: Int) -> LeaseAnswer {
    LeaseAnswer(id: ids[index & 1_023], service: "db", holder: "ci-job", holder_pid: 4_242, client_pid: nil, ttl_ms: 60_000,
                acquired_at: "2026-11-26T00:40:00.123Z", expires_at: "2026-11-26T00:41:00.123Z", count: 3, started: false, waited_ms: nil)
}

/// The event row's INSERT, 20,000 per transaction, on scratch databases removed afterwards.
func eventInsert() -> (Double, Double) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wire-bench-\(getpid())").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    do {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try BindingBenchmark.nanosecondsPerInsert(rows: 20_000, rounds: 5, directory: directory)
    } catch {
        print("event insert: \(error)")
        return (.nan, .nan)
    }
}

let rows: [(String, Double, Double)] = [
    ("RFC 3339 timestamp (Timestamp.format vs ISO8601FormatStyle)",
     nanosecondsPerCall(iterations) { Timestamp.format(dates[$0 & 1_023]).utf8.count },
     nanosecondsPerCall(iterations) { dates[$0 & 1_023].formatted(isoStyle).utf8.count }),
    ("JSON string literal (JSONText.quoted vs JSONEncoder)",
     nanosecondsPerCall(iterations) { JSONText.quoted(ids[$0 & 1_023]).utf8.count },
     nanosecondsPerCall(iterations) { (try? encoder.encode(ids[$0 & 1_023]))?.count ?? 0 }),
    ("lease answer object (JSONObjectText vs JSONEncoder, sorted keys)",
     nanosecondsPerCall(iterations) { index in
         let lease = answer(index)
         var object = JSONObjectText()
         object.add("id", lease.id); object.add("service", lease.service); object.add("holder", lease.holder)
         object.add("holder_pid", lease.holder_pid); object.add("client_pid", lease.client_pid); object.add("ttl_ms", lease.ttl_ms)
         object.add("acquired_at", lease.acquired_at); object.add("expires_at", lease.expires_at)
         object.add("count", lease.count); object.add("started", lease.started); object.add("waited_ms", lease.waited_ms)
         return object.text.utf8.count
     },
     nanosecondsPerCall(iterations) { (try? encoder.encode(answer($0)))?.count ?? 0 }),
    { let (direct, boxed) = eventInsert(); return ("event row INSERT (DirectStatement vs execute(arguments:))", direct, boxed) }(),
]
print("stand-in                                                          by hand ns    library ns   ratio")
for (name, byHand, foundation) in rows {
    print(name.padding(toLength: 66, withPad: " ", startingAt: 0)
          + String(format: "%10.0f %14.0f %7.1fx", byHand, foundation, foundation / byHand))
}
