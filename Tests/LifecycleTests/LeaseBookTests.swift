import Foundation
import Posix
import Synchronization
import Testing
@testable import Lifecycle

@Suite("Lease book and refusals")
struct LeaseBookTests {
    @Test("reservations count against both limits until given back")
    func reservations() throws {
        let book = LeaseBook(maxLeases: 3, maxPerService: 2)
        try book.reserve("a", owner: nil, now: 0)
        try book.reserve("a", owner: nil, now: 0)
        #expect(throws: LeaseBook.Refusal.self) { try book.reserve("a", owner: nil, now: 0) }
        try book.reserve("b", owner: nil, now: 0)
        do {
            try book.reserve("c", owner: nil, now: 0)
            Issue.record("the total limit let a fourth acquire through")
        } catch {
            #expect(error.reached == .total && error.limit == 3)
        }
        book.cancelReservation("a", owner: nil)
        try book.reserve("a", owner: nil, now: 0)
    }

    @Test("a per-owner limit counts each owner's reservations apart; procrefd's own are not counted")
    func perOwner() throws {
        let book = LeaseBook(maxLeases: 100, maxPerService: 100, maxPerOwner: 2)
        try book.reserve("a", owner: "uid:1000", now: 0)
        try book.reserve("b", owner: "uid:1000", now: 0)
        do {
            try book.reserve("c", owner: "uid:1000", now: 0)
            Issue.record("a third lease for one owner")
        } catch {
            #expect(error.reached == .owner && error.limit == 2)
        }
        try book.reserve("a", owner: "uid:1001", now: 0)
        for _ in 0..<5 { try book.reserve("a", owner: nil, now: 0) }
        book.cancelReservation("a", owner: "uid:1000")
        try book.reserve("c", owner: "uid:1000", now: 0)
    }

    @Test("refusals are recorded at most once a second per service, the next one saying how many were folded")
    func folding() {
        var folding = RefusalFolding()
        #expect(folding.refused("a", now: 0) == 0)
        #expect(folding.refused("a", now: 10) == nil)
        #expect(folding.refused("a", now: 999) == nil)
        #expect(folding.refused("b", now: 999) == 0)
        #expect(folding.refused("a", now: 1_000) == 2)
        #expect(folding.refused("a", now: 1_001) == nil)
    }

    @Test("one acquire per Idempotency-Key at a time, in arrival order")
    func idempotencyGate() async {
        let gate = IdempotencyGate()
        let order = Log()
        await gate.enter("k")
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await gate.enter("k")
                order.append(2)
                gate.leave("k")
            }
            group.addTask {
                await gate.enter("other")  // another key never waits
                order.append(1)
                gate.leave("other")
            }
            // Let the waiter queue, then free the key.
            while order.entries != [1] { await Task.yield() }
            order.append(0)
            gate.leave("k")
        }
        #expect(order.entries == [1, 0, 2])
    }
}

/// What the tasks did, in order.
final class Log: Sendable {
    private let state = Mutex<[Int]>([])
    func append(_ value: Int) { state.withLock { $0.append(value) } }
    var entries: [Int] { state.withLock { $0 } }
}

@Suite("Lease ids")
struct LeaseIDTests {
    @Test("l_ + 24 lowercase hex digits; the first 16 (the stamp) grow strictly, even from many threads")
    func growing() {
        let ids = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let made = (0..<500).map { _ in LeaseIssuer.newLeaseID() }
            ids.withLock { $0 += made }
        }
        let all = ids.withLock { $0 }
        let hex = Set("0123456789abcdef")
        for id in all {
            #expect(id.count == 26 && id.hasPrefix("l_") && id.dropFirst(2).allSatisfy(hex.contains), "\(id)")
        }
        let stamps = all.map { $0.dropFirst(2).prefix(16) }
        #expect(Set(stamps).count == all.count)
        let before = LeaseIssuer.newLeaseID()
        let after = LeaseIssuer.newLeaseID()
        #expect(before.prefix(18) < after.prefix(18))
        let micros = UInt64(before.dropFirst(2).prefix(16), radix: 16) ?? 0
        #expect(abs(Double(micros) / 1e6 - Date().timeIntervalSince1970) < 60)
    }
}
