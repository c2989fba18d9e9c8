// swift-tools-version:6.1
import PackageDescription

/// Swift 6 language mode (strict concurrency) everywhere. MemberImportVisibility: a member
/// is found only in modules a file imports itself, so a Foundation method cannot slip in
/// through a dependency that imports Foundation (and link ICU's data: see README, Binary size).
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6), .enableUpcomingFeature("MemberImportVisibility")]

let package = Package(
    name: "procrefd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "procrefd", targets: ["procrefd"]),
        .executable(name: "procref-holder", targets: ["procref-holder"]),
        .executable(name: "procref-logpump", targets: ["procref-logpump"]),
        .executable(name: "procref-door", targets: ["procref-door"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // C: what Swift cannot call directly (variadic functions, hidden _GNU_SOURCE symbols, union semun).
        // Function sections let the static holder link only the shims it calls.
        .target(name: "CPosixShims", cSettings: [.unsafeFlags(["-ffunction-sections", "-fdata-sections"])]),
        .target(name: "CMicroHTTPD", linkerSettings: [.linkedLibrary("microhttpd")]),
        // A SQLite VFS shim: each WAL frame (header and page) is written with one call, not two.
        .target(name: "CWALFrames", linkerSettings: [.linkedLibrary("sqlite3")]),

        // Typed syscall wrappers: semaphore sets, spawning, pidfds, signals, files.
        .target(
            name: "Posix",
            dependencies: ["CPosixShims", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict),

        // Text formats shared by storage, the API and the config file: RFC 3339 timestamps,
        // JSON string literals, strict decoding (unknown keys are errors).
        .target(name: "Wire", swiftSettings: strict),

        // SQLite's C API from the system's libsqlite3, and a small Swift layer over it
        // (connections, statements, rows, a WAL reader pool) that needs no Foundation.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "SQLite", dependencies: ["CSQLite"], swiftSettings: strict),

        // SQLite audit log and lease/service tables; migrations are embedded at build time from ../../migrations.
        .executableTarget(name: "FileEmbedder", swiftSettings: strict),
        .plugin(name: "EmbedMigrations", capability: .buildTool(), dependencies: ["FileEmbedder"]),
        // The dashboard's HTML, CSS and JS (Sources/ControlAPI/Dashboard/), embedded in the binary.
        .plugin(name: "EmbedDashboard", capability: .buildTool(), dependencies: ["FileEmbedder"]),
        .target(
            name: "AuditStore",
            dependencies: [
                "Wire", "CWALFrames", "SQLite", "CSQLite", "Posix", .product(name: "Metrics", package: "swift-metrics"),
                // SHA-256 of the audit log's hash chain.
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict,
            plugins: ["EmbedMigrations"]),

        // HTTP server on libmicrohttpd, without domain knowledge.
        .target(name: "MicroHTTPD", dependencies: ["CMicroHTTPD"], swiftSettings: strict),

        // The daemon's own files: state dir, flock claim and singleton probe, PID file, tokens.
        .target(name: "Daemon", dependencies: ["Posix", "Wire"], swiftSettings: strict),

        // A service's state machine: events in, actions out. No dependencies at all, so the
        // build enforces that it does no I/O.
        .target(name: "LifecycleModel", swiftSettings: strict),

        // Leases, services (their executors), holders, health checks, process control.
        .target(
            name: "Lifecycle",
            dependencies: [
                "LifecycleModel", "Posix", "AuditStore", "Wire", .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),

        // The TOML config file: daemon settings and [services.NAME] tables.
        .target(
            name: "Configuration",
            dependencies: ["Lifecycle", "AuditStore", "Daemon", "Posix", "Wire", .product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strict),

        // REST routes, JSON bodies, errors as problem+json.
        .target(
            name: "ControlAPI",
            dependencies: ["Lifecycle", "MicroHTTPD", "AuditStore", "Daemon", "Posix", "Wire", .product(name: "Metrics", package: "swift-metrics")],
            exclude: ["Dashboard"],
            swiftSettings: strict,
            plugins: ["EmbedDashboard"]),

        // HTTP requests to procrefd's API and their answers, one protocol for the CLI's client
        // and the tests'.
        .target(name: "ProcrefdClient", dependencies: ["Posix", "Wire"], swiftSettings: strict),

        .executableTarget(
            name: "procrefd",
            dependencies: [
                "ProcrefdClient", "ControlAPI", "Configuration", "Lifecycle", "MicroHTTPD", "AuditStore", "Posix", "Daemon", "Wire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict),

        // One process per lease: Embedded Swift on libc, linked statically so no dynamic loader
        // runs at each spawn (spawn + exit ~115 µs of CPU here, ~175 µs dynamically linked).
        .executableTarget(
            name: "procref-holder",
            dependencies: ["CPosixShims"],
            swiftSettings: [
                .enableExperimentalFeature("Embedded"),
                .unsafeFlags(["-wmo", "-Osize"]),
            ],
            linkerSettings: [.unsafeFlags(["-Xclang-linker", "-static", "-Xclang-linker", "-Wno-unused-command-line-argument", "-Xlinker", "--gc-sections"])]),

        // A service's output into its log file, rotated by size; outlives procrefd like a holder.
        .executableTarget(name: "procref-logpump"),

        // A service's front door: every open client connection one kernel reference, bytes
        // forwarded with splice(2); outlives procrefd like a holder.
        .executableTarget(name: "procref-door", dependencies: ["CPosixShims"], swiftSettings: strict),

        // bench/: the hand-written stand-ins timed against the library calls they replace
        // (run by `make bench`; a stand-in stays only while it wins there).
        .executableTarget(
            name: "wire-bench", dependencies: ["AuditStore", "ControlAPI", "Wire", "SQLite"],
            path: "bench/WireBench", swiftSettings: strict),

        .testTarget(name: "PosixTests", dependencies: ["Posix"], swiftSettings: strict),
        .testTarget(name: "SQLiteTests", dependencies: ["SQLite", "CSQLite"], swiftSettings: strict),
        .testTarget(name: "ProcrefdClientTests", dependencies: ["ProcrefdClient"], swiftSettings: strict),
        .testTarget(name: "AuditStoreTests", dependencies: ["AuditStore", "SQLite", "Wire"], swiftSettings: strict),
        .testTarget(
            name: "ControlAPITests",
            dependencies: ["ControlAPI", "Lifecycle", "AuditStore", "MicroHTTPD", "Daemon", "Wire", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        // The lifecycle's pure parts (service machine, lease book, refusal folding) without processes.
        .testTarget(name: "LifecycleTests", dependencies: ["Lifecycle", "LifecycleModel", "Posix", "AuditStore", "Wire"], swiftSettings: strict),
        .testTarget(name: "ConfigurationTests", dependencies: ["Configuration", "Lifecycle", "ControlAPI"], swiftSettings: strict),
        .testTarget(
            name: "IntegrationTests", dependencies: ["Posix", "ProcrefdClient"], exclude: ["Support/test_service.py", "Support/forking_service.py", "Support/activated_service.py"], swiftSettings: strict),
    ]
)
