import Synchronization

/// A value read by many threads and replaced whole: a setting a config reload changes.
/// Each reader takes one consistent copy.
public final class SharedValue<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    public init(_ value: Value) { self.value = Mutex(value) }
    public var current: Value { value.withLock { $0 } }
    public func set(_ new: Value) { value.withLock { $0 = new } }
}
