import AuditStore
import Foundation
@testable import Lifecycle
import LifecycleModel
import Testing

/// The delicate middle, in process: requests racing each other through the executor, the
/// machine, the issuer and the book. After every race the kernel count, the book and the
/// machine must tell the same story.
@Suite("Core races")
struct CoreRaceTests {
    @Test("an acquire racing the last release: count, book and machine agree after every round")
    func acquireAgainstLastRelease() async throws {
        try await withCore { core in
            let name = try await core.defineLock("race")
            for _ in 0..<25 {
                let first = try await core.lease(name)
                async let released = core.release(id: first.lease.id, actor: .procrefd)
                async let second = core.lease(name)
                let (release, grant) = try await (released, second)
                #expect(release.count.map { (0...1).contains($0) } == true)
                #expect(grant.count.map { (1...2).contains($0) } == true)
                let state = try core.agreement(name)
                #expect(state.count == 1 && state.leases == 1 && state.state == .ready, "\(state)")
                let last = try await core.release(id: grant.lease.id, actor: .procrefd)
                #expect(last.count == 0)
                let after = try core.agreement(name)
                #expect(after.count == 0 && after.leases == 0 && after.state == .stopped, "\(after)")
            }
        }
    }

    @Test("a removal racing acquires: either the service goes with no lease left, or it stays with every lease counted")
    func removalAgainstAcquire() async throws {
        try await withCore { core in
            for _ in 0..<10 {
                let name = try await core.defineLock("remove")
                async let removal: Bool = (try? await core.removeService(name, actor: .procrefd)) != nil
                async let grant: LeaseGrant? = try? await core.lease(name)
                let (removed, granted) = await (removal, grant)
                if removed {
                    // Removed: no lease of it survives, and its set is gone.
                    #expect(core.leaseInfos(service: name).isEmpty)
                    #expect(throws: LifecycleError.self) { try core.serviceStatus(name) }
                } else {
                    let state = try core.agreement(name)
                    #expect(state.count == state.leases, "\(state)")
                    if let granted { _ = try await core.release(id: granted.lease.id, actor: .procrefd) }
                    try await core.removeService(name, actor: .procrefd)
                }
            }
        }
    }

    @Test("a definition change (slots) racing acquires: every granted lease is counted, and releasing them all leaves 0")
    func redefinitionAgainstAcquires() async throws {
        try await withCore { core in
            let name = try await core.defineLock("redefine")
            var grants: [LeaseGrant] = []
            try await withThrowingTaskGroup(of: LeaseGrant?.self) { group in
                for _ in 0..<6 { group.addTask { try? await core.lease(name) } }
                group.addTask {
                    var definition = ServiceDefinition(start: [])
                    definition.slots = 2
                    _ = try await core.defineService(name: name, definition: definition, actor: .procrefd)
                    return nil
                }
                for try await grant in group { if let grant { grants.append(grant) } }
            }
            let state = try core.agreement(name)
            #expect(state.count == grants.count && state.leases == grants.count, "\(state), \(grants.count) granted")
            for grant in grants { _ = try await core.release(id: grant.lease.id, actor: .procrefd) }
            let after = try core.agreement(name)
            #expect(after.count == 0 && after.leases == 0, "\(after)")
            // The new definition applies: two slots, and a third acquire that may not wait is refused.
            let held = [try await core.lease(name), try await core.lease(name)]
            await #expect(throws: LifecycleError.self) { try await core.lease(name) }
            for grant in held { _ = try await core.release(id: grant.lease.id, actor: .procrefd) }
        }
    }
}
