import Wire

/// The `[services.NAME]` tables of a config file, checked in one place for every caller (the
/// file's parser, and the core when it applies them).
public enum ConfigTables {
    /// Each definition in name order: its name is checked, then `check` runs on it (and may
    /// return it changed, for instance with its programs resolved). The first problem is
    /// thrown, a field named `services.NAME.FIELD`; nothing is returned unless all pass.
    public static func checked(
        _ definitions: [String: ServiceDefinition],
        _ check: (ServiceDefinition) throws(LifecycleError) -> ServiceDefinition = validated
    ) throws(LifecycleError) -> [String: ServiceDefinition] {
        var checked: [String: ServiceDefinition] = [:]
        for (name, definition) in definitions.sorted(by: { $0.key < $1.key }) {
            guard ServiceName.isValid(name) else {
                throw .invalidField(DefinitionError(field: "services.\(name)", message: "invalid name (^[a-z0-9][a-z0-9._-]{0,62}$)"))
            }
            do { checked[name] = try check(definition) } catch {
                guard case .invalidField(let problem) = error else { throw error }
                throw .invalidField(DefinitionError(field: "services.\(name).\(problem.field)", message: problem.message))
            }
        }
        return checked
    }

    /// The definition, when its fields are valid.
    public static func validated(_ definition: ServiceDefinition) throws(LifecycleError) -> ServiceDefinition {
        do throws(DefinitionError) { try definition.validate() } catch { throw .invalidField(error) }
        return definition
    }
}
