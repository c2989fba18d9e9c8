import AuditStore
import Foundation

/// Runs `body` on a new audit store in a temp dir, removed afterwards.
func withTemporaryStore(_ body: (AuditStore) throws -> Void) throws {
    let dir = NSTemporaryDirectory() + "procrefd-store-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try body(try AuditStore(path: "\(dir)/procrefd.db"))
}
