import MicroHTTPD

extension HTTPRequest {
    /// An integer query parameter within `range`; nil when absent, 422 naming it otherwise.
    func integer(_ name: String, in range: ClosedRange<Int>) throws(Problem) -> Int? {
        guard let text = query[name] else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw .invalidField(name, "must be an integer within \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// A boolean query parameter (`true` or `false`); nil when absent, 422 otherwise.
    func boolean(_ name: String) throws(Problem) -> Bool? {
        guard let text = query[name] else { return nil }
        guard let value = Bool(text) else { throw .invalidField(name, "must be true or false") }
        return value
    }
}
