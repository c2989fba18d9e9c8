import Foundation
import Glibc
@testable import Lifecycle
import Posix
import Testing

/// The holder pool with real `procref-holder` processes on a real semaphore set: a released
/// holder is recycled for the next lease, the pool evicts and trims what it does not need,
/// and a closed pool retires every holder.
@Suite("Holder pool")
struct HolderPoolTests {
    /// A pool of `size` on a new set, shut down and the set removed afterwards.
    func withPool(size: Int, _ body: (HolderPool, SemaphoreSet) async throws -> Void) async throws {
        let loop = try IOLoop(name: "pool-test")
        let reports = try ReleaseReports(loop: loop)
        let pool = HolderPool(loop: loop, executable: "\(binDirectory)/procref-holder", spawner: Spawner(), size: size, releaseReports: reports.holderEnd)
        let key = SemaphoreSet.key(scope: "pool-test", service: UUID().uuidString.lowercased())
        let set = try #require(try SemaphoreSet.create(key: key))
        defer {
            try? set.remove()
            loop.shutdown()
        }
        do { try await body(pool, set) } catch {
            await pool.shutdown()
            throw error
        }
        await pool.shutdown()
    }

    /// Gives the holder's reference back the way procrefd does, and returns its answer.
    func release(_ holder: HolderProcess, on loop: IOLoop) async -> HolderProtocol.Reply? {
        guard let socket = holder.beginExchange(HolderProtocol.releaseLine) else { return nil }
        let answer = await loop.readLine(socket, timeoutMs: 5_000)
        holder.endExchange()
        return answer.map(HolderProtocol.Reply.init)
    }

    func isIdle(_ holder: HolderProcess) -> Bool {
        let argv = (try? String(contentsOfFile: "/proc/\(holder.process.pid)/cmdline", encoding: .utf8))?.split(separator: "\0") ?? []
        return argv.dropFirst().first.map(String.init) == HolderProtocol.poolFlag
    }

    @Test("recycle: a released holder holds nothing, shows --pool, and takes the next lease itself (last in, first out)")
    func recycle() async throws {
        try await withPool(size: 1) { pool, set in
            let holder = try await pool.launch(semaphoreID: set.id, ttlMs: nil, clientPID: nil, clientFD: nil)
            #expect(try set.count() == 1)
            #expect(await release(holder, on: pool.loop) == .released)
            #expect(try set.count() == 0)
            pool.recycle(holder)
            #expect(eventually { isIdle(holder) })
            guard case .launched(let again) = pool.launchNow(semaphoreID: set.id, ttlMs: nil, clientPID: nil, clientFD: nil) else {
                Issue.record("the recycled holder did not take the lease")
                return
            }
            #expect(again === holder)
            #expect(try set.count() == 1)
            #expect(await release(again, on: pool.loop) == .released)
            #expect(try set.count() == 0)
        }
    }

    @Test("evict and trim: past twice its size the least recently used idle holder goes at once; a quiet second later the pool is back to its size, keeping the newest")
    func evictAndTrim() async throws {
        try await withPool(size: 1) { pool, set in
            var holders: [HolderProcess] = []
            for _ in 0..<3 { holders.append(try await pool.launch(semaphoreID: set.id, ttlMs: nil, clientPID: nil, clientFD: nil)) }
            #expect(try set.count() == 3)
            for holder in holders {
                #expect(await release(holder, on: pool.loop) == .released)
                pool.recycle(holder)
            }
            #expect(try set.count() == 0)
            #expect(pool.idleCount <= 2)
            #expect(eventually { pool.idleCount == 1 })
            let newest = holders[2]
            #expect(eventually { !newest.hasExited && isIdle(newest) })
            #expect(eventually { holders[0].process.identity.isAlive == false && holders[1].process.identity.isAlive == false })
        }
    }

    @Test("retire: a closed pool retires every idle holder, and a holder recycled after it is retired too")
    func retire() async throws {
        let loop = try IOLoop(name: "pool-test")
        let reports = try ReleaseReports(loop: loop)
        let pool = HolderPool(loop: loop, executable: "\(binDirectory)/procref-holder", spawner: Spawner(), size: 2, releaseReports: reports.holderEnd)
        let set = try #require(try SemaphoreSet.create(key: SemaphoreSet.key(scope: "pool-test", service: UUID().uuidString.lowercased())))
        defer {
            try? set.remove()
            loop.shutdown()
        }
        let leased = try await pool.launch(semaphoreID: set.id, ttlMs: nil, clientPID: nil, clientFD: nil)
        #expect(eventually { pool.idleCount >= 1 })  // the refill thread fills the pool meanwhile
        await pool.shutdown()
        #expect(pool.idleCount == 0)
        #expect(await release(leased, on: loop) == .released)
        pool.recycle(leased)
        #expect(eventually { leased.process.identity.isAlive == false })
        #expect(try set.count() == 0)
    }
}
