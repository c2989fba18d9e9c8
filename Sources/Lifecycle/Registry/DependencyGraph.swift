import Wire

/// Services' `requires`, as a graph: the checks made when a definition is accepted (every
/// name defined, no cycle), and who requires whom, for status.
struct DependencyGraph: Sendable {
    /// Each service's `requires`.
    let edges: [String: [String]]

    init(_ edges: [String: [String]]) { self.edges = edges }

    /// The first problem of the graph, as a 422 on `field` (`requires`, or its place in the
    /// config file): a name no service has, or a cycle, spelt out.
    func check(field: (String) -> String = { _ in "requires" }) throws(LifecycleError) {
        for (service, required) in edges.sorted(by: { $0.key < $1.key }) {
            for name in required where edges[name] == nil {
                throw .invalidField(DefinitionError(field: field(service), message: "no service \(name) is defined"))
            }
        }
        if let cycle = firstCycle() {
            throw .invalidField(DefinitionError(field: field(cycle[0]), message: "a cycle: \(cycle.joined(separator: " → "))"))
        }
    }

    /// A cycle as the path that closes it (`a → b → a`), or nil. Depth-first, in name order.
    func firstCycle() -> [String]? {
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var path: [String] = []
        func visit(_ node: String) -> [String]? {
            switch marks[node] {
            case .done?: return nil
            case .visiting?: return Array(path[path.firstIndex(of: node)!...]) + [node]
            case nil: break
            }
            marks[node] = .visiting
            path.append(node)
            for next in edges[node] ?? [] {
                if let cycle = visit(next) { return cycle }
            }
            path.removeLast()
            marks[node] = .done
            return nil
        }
        for node in edges.keys.sorted() {
            if let cycle = visit(node) { return cycle }
        }
        return nil
    }

    /// The services that require `name`, sorted.
    func requiredBy(_ name: String) -> [String] {
        edges.filter { $0.value.contains(name) }.map(\.key).sorted()
    }
}
