import Foundation
import Glibc
import Testing

/// Under systemd (JOURNAL_STREAM naming standard error) every log line carries its syslog
/// priority, so journalctl -p filters them; anywhere else the lines stay as they were.
@Suite("Journal log lines")
struct JournalLogTests {
    /// procrefd's standard error from start to a clean stop, with JOURNAL_STREAM naming that
    /// very pipe (`journal`), or not set.
    func standardError(journal: Bool) throws -> String {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (output, errors) = (Pipe(), Pipe())
        var info = stat()
        #expect(fstat(errors.fileHandleForWriting.fileDescriptor, &info) == 0)
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "JOURNAL_STREAM")
        if journal { environment["JOURNAL_STREAM"] = "\(info.st_dev):\(info.st_ino)" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "\(binDirectory)/procrefd")
        // With a config file and --log-level info, start-up has lines to write.
        try "[services.noisy]\nstart = [\"sleep\", \"30\"]\n".write(toFile: "\(dir)/procrefd.toml", atomically: true, encoding: .utf8)
        process.arguments = ["serve", "--state-dir", "\(dir)/state", "--port", "0", "--log-level", "info", "--config", "\(dir)/procrefd.toml"]
        process.environment = environment
        (process.standardOutput, process.standardError) = (output, errors)
        try process.run()
        _ = output.fileHandleForReading.availableData  // the ready line
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        try errors.fileHandleForWriting.close()
        return String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    @Test("with JOURNAL_STREAM naming standard error, every line starts with its priority; without it, none does")
    func priorities() throws {
        let journal = try standardError(journal: true).split(separator: "\n")
        #expect(!journal.isEmpty)
        #expect(journal.allSatisfy { $0.range(of: #"^<[0-7]>procrefd"#, options: .regularExpression) != nil }, "\(journal)")
        #expect(journal.contains { $0.hasPrefix("<6>") || $0.hasPrefix("<5>") }, "\(journal)")
        let plain = try standardError(journal: false).split(separator: "\n")
        #expect(!plain.isEmpty)
        #expect(plain.allSatisfy { !$0.hasPrefix("<") }, "\(plain)")
    }
}
