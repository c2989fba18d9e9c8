/// The kernel reference count of a service as one `GETVAL` found it.
///
/// A read that fails is `unreadable`, never 0: the set may have been removed (`ipcrm`), or an
/// EINVAL or EIDRM raced a re-creation, and live leases may still count. Only a known 0
/// starts a stop or a linger; an unknown count keeps the service as it is.
public enum KernelCount: Equatable, Sendable, CustomStringConvertible {
    case known(Int)
    /// The read failed with this errno.
    case unreadable(errno: Int32)

    /// The count, when it was read.
    public var value: Int? {
        if case .known(let count) = self { return count }
        return nil
    }

    /// Known to be 0: nothing counts the service, so it may stop or linger.
    public var isZero: Bool { self == .known(0) }

    /// Someone may count the service: a known count above 0, or an unknown one.
    public var mayBeHeld: Bool { !isZero }

    /// Whether `more` references fit below `limit`; never when the count is unknown.
    public func fits(adding more: Int, below limit: Int) -> Bool {
        guard let value else { return false }
        return value + more < limit
    }

    public var description: String {
        switch self {
        case .known(let count): return String(count)
        case .unreadable(let errno): return "unreadable (errno \(errno))"
        }
    }
}
