import AuditStore
import Foundation
import Glibc
@testable import Lifecycle
import LifecycleModel
import Logging
import Posix

/// The binaries built next to the tests (the holder, for the in-process core).
let binDirectory: String = {
    if let dir = ProcessInfo.processInfo.environment["PROCREFD_BIN_DIR"], !dir.isEmpty { return dir }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug").path
}()

/// Waits for `condition` until `timeout` seconds have passed; its last answer.
func eventually(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(5_000)
    }
    return try condition()
}

/// A real core in this process: a SQLite file in a temp dir, real holders on real
/// semaphore sets, no HTTP and no cgroups. Its services are locks (nothing to run), so the
/// tests exercise the executor, the machine, the issuer and the book, and nothing else.
/// Drained at the end (every lease revoked, every set removed), the dir removed.
func withCore(_ body: (Coordinator) async throws -> Void) async throws {
    let dir = NSTemporaryDirectory() + "procrefd-core-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let store = try AuditStore(path: "\(dir)/procrefd.db")
    var config = CoordinatorConfig(
        holderExecutable: "\(binDirectory)/procref-holder", logsDirectory: dir, scope: "core-test-\(UUID().uuidString.prefix(8))")
    config.serviceCgroups = false
    config.holderPoolSize = 4
    let core = try Coordinator(config: config, store: store, logger: Logger(label: "core-test"))
    do {
        try await body(core)
    } catch {
        await core.drain(actor: .procrefd)
        core.stopLoop()
        throw error
    }
    await core.drain(actor: .procrefd)
    core.stopLoop()
}

extension Coordinator {
    /// Defines a lock (a service with nothing to run; it takes `slots` leases at once) under a unique name.
    func defineLock(_ prefix: String, slots: Int = 64) async throws -> String {
        let name = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        var definition = ServiceDefinition(start: [])
        definition.slots = slots
        _ = try await defineService(name: name, definition: definition, actor: .procrefd)
        return name
    }

    func lease(_ service: String, waitMs: Int = 0) async throws(LifecycleError) -> LeaseGrant {
        try await acquire(service: service, request: AcquireRequest(ttlMs: 60_000, waitMs: waitMs), actor: .procrefd)
    }

    /// The kernel count, the leases in the book and the machine's state of `service`.
    func agreement(_ service: String) throws -> (count: Int?, leases: Int, state: ServiceState) {
        let status = try serviceStatus(service)
        return (status.count, leaseInfos(service: service).count, status.state)
    }
}
