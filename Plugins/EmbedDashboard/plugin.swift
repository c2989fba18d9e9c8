import Foundation
import PackagePlugin

/// Turns the target's `Dashboard/*.{html,css,js}` into `EmbeddedDashboard.swift`: the daemon
/// serves its dashboard from its own binary, with nothing beside it.
@main
struct EmbedDashboard: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        guard let target = target as? SourceModuleTarget else { return [] }
        let directory = target.directoryURL.appending(path: "Dashboard")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".html") || $0.hasSuffix(".css") || $0.hasSuffix(".js") }
            .sorted()
        let inputs = names.map { directory.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedDashboard.swift")
        return [
            .buildCommand(
                displayName: "Embedding the dashboard (\(names.count) files)",
                executable: try context.tool(named: "FileEmbedder").url,
                arguments: [output.path, "embeddedDashboard"] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
