/// What a stopping daemon does with its leases and services.
public enum ShutdownMode: String, Sendable, Codable, CaseIterable {
    /// Revoke every lease, stop every service, remove the semaphore sets.
    case drain
    /// Leave holders and services running for the next procrefd to re-adopt.
    case handoff
}
