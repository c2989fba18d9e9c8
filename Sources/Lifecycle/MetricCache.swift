import Metrics
import Synchronization

/// Metrics of one label, made once per set of dimension values: `Counter(label:dimensions:)`
/// asks the backend (a lock and a registry lookup, with the label set built anew) on every
/// call, and the lease fast path counts on every request.
public final class MetricCache<Metric: Sendable>: Sendable {
    private let make: @Sendable ([String]) -> Metric
    private let made = Mutex<[[String]: Metric]>([:])

    /// `make` builds the metric for the dimension values, in a fixed order.
    public init(_ make: @escaping @Sendable ([String]) -> Metric) { self.make = make }

    /// The metric for these dimension values.
    public func callAsFunction(_ values: String...) -> Metric {
        if let metric = made.withLock({ $0[values] }) { return metric }
        let metric = make(values)
        return made.withLock { made in
            if let existing = made[values] { return existing }
            made[values] = metric
            return metric
        }
    }
}
