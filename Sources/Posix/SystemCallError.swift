import CPosixShims
import SystemPackage

/// A failed system call: which call, and the errno it set.
public struct SystemCallError: Error, CustomStringConvertible, Equatable, Sendable {
    public let call: String
    public let errno: Errno

    public init(_ call: String, errno: Errno) {
        self.call = call
        self.errno = errno
    }

    /// Captures the current thread's errno for `call`.
    public static func current(_ call: String) -> SystemCallError {
        SystemCallError(call, errno: Errno(rawValue: procref_errno()))
    }

    public var description: String { "\(call): \(errno) (errno \(errno.rawValue))" }
}

/// Returns `result` unless it is -1, in which case throws the errno of `call`.
@discardableResult
func check<T: BinaryInteger>(_ call: String, _ result: T) throws(SystemCallError) -> T {
    if result == -1 { throw SystemCallError.current(call) }
    return result
}
