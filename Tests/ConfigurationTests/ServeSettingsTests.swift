import AuditStore
import Configuration
import Daemon
import Lifecycle
import Testing

/// How `serve` merges its flags, the config file and the defaults.
@Suite("Serve settings")
struct ServeSettingsTests {
    @Test("a flag wins over the file's key, the file over the default")
    func precedence() throws {
        let file = try DaemonConfig.parse("listen = \"0.0.0.0\"\nport = 9000\ndurability = \"full\"\non_exit = \"handoff\"")
        let fromFile = ServeSettings(flags: CommandLineSettings(), file: file)
        #expect(fromFile == ServeSettings(flags: CommandLineSettings(listen: "0.0.0.0", port: 9000, durability: .full, onExit: .handoff), file: DaemonConfig()))
        #expect((fromFile.listen, fromFile.port, fromFile.durability, fromFile.onExit) == ("0.0.0.0", 9000, .full, .handoff))
        let flagged = ServeSettings(flags: CommandLineSettings(listen: "127.0.0.2", port: 0, durability: .normal, onExit: .drain), file: file)
        #expect((flagged.listen, flagged.port, flagged.durability, flagged.onExit) == ("127.0.0.2", 0, .normal, .drain))
        let defaults = ServeSettings(flags: CommandLineSettings(), file: DaemonConfig())
        #expect((defaults.listen, defaults.port, defaults.durability, defaults.onExit) == ("127.0.0.1", 7683, .normal, .drain))
    }

    @Test("--listen HOST:PORT gives the port too, and names both keys as overridden")
    func listenWithPort() throws {
        let file = try DaemonConfig.parse("port = 9000")
        let flags = CommandLineSettings(listen: "[::1]:8123")
        let settings = ServeSettings(flags: flags, file: file)
        #expect(settings.listen == "::1" && settings.port == 8123)
        #expect(flags.overriddenKeys == ["listen", "port"])
        #expect(CommandLineSettings(durability: .full).overriddenKeys == ["durability"])
        #expect(ListenAddress.split("::1")! == ("::1", nil))
        #expect(ListenAddress.split("host:") == nil)
    }

    @Test("live settings: the file's limits, --default-ttl-ms over the file, and [access] bounding each user by default")
    func live() throws {
        var config = CoordinatorConfig(holderExecutable: "", logsDirectory: "", scope: "")
        let file = try DaemonConfig.parse("default_ttl_ms = 5000\n[limits]\nmax_leases = 10\nmax_leases_per_service = 4\n[access]\nreaders = [\"*\"]")
        ServeSettings.applyLive(file, flags: CommandLineSettings(), to: &config)
        #expect(config.defaultTTLMs == 5_000 && config.maxLeases == 10 && config.maxLeasesPerService == 4)
        #expect(config.maxLeasesPerUser == 4)
        ServeSettings.applyLive(file, flags: CommandLineSettings(defaultTTLMs: 7_000), to: &config)
        #expect(config.defaultTTLMs == 7_000)
        ServeSettings.applyLive(try DaemonConfig.parse(""), flags: CommandLineSettings(), to: &config)
        #expect(config.maxLeasesPerUser == nil && config.maxLeases == CoordinatorConfig(holderExecutable: "", logsDirectory: "", scope: "").maxLeases)
    }
}
