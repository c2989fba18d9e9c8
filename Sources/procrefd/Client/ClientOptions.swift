import ArgumentParser
import Daemon
import FoundationEssentials
import Lifecycle
import ProcrefdClient
import Wire

/// Where client commands send their requests, and how they print answers.
struct ClientOptions: ParsableArguments {
    @OptionGroup var location: StateLocation

    @Option(help: "Talk to procrefd over TCP at http://HOST:PORT instead of its Unix socket (changes need --token).")
    var url: String?

    @Option(help: "Bearer token for --url (default: $PROCREFD_TOKEN). Every local user can read it in `ps`: prefer --token-file or $PROCREFD_TOKEN.")
    var token: String?

    @Option(help: "A file holding the bearer token for --url (STATE/token, STATE/read-token, or a copy): not shown in `ps`.")
    var tokenFile: String?

    @Option(help: "The daemon's Unix socket, where it is not STATE/procrefd.sock (default: $PROCREFD_SOCKET).")
    var socket: String?

    @Flag(help: "Print the API's JSON instead of text.")
    var json = false

    func validate() throws {
        if let url, HTTPTarget(url) == nil { throw ValidationError("--url must look like http://HOST:PORT, got \(url)") }
        if token != nil, tokenFile != nil { throw ValidationError("give --token or --token-file, not both") }
        if let tokenFile, fileToken(tokenFile) == nil { throw ValidationError("--token-file \(tokenFile): cannot read a token from it") }
    }

    var client: APIClient {
        if let url, let target = HTTPTarget(url) {
            let given = tokenFile.flatMap(fileToken) ?? token
            return APIClient(endpoint: .tcp(host: target.host, port: target.port),
                             token: given ?? ProcessInfo.processInfo.environment["PROCREFD_TOKEN"])
        }
        let path = socket ?? ProcessInfo.processInfo.environment["PROCREFD_SOCKET"].flatMap { $0.isEmpty ? nil : $0 } ?? location.directory.socket
        return APIClient(endpoint: .unix(path: path), token: nil)
    }

    /// The token in `path`: its first line, trimmed; nil when unreadable or empty.
    private func fileToken(_ path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let token = text.split(separator: "\n").first.map { $0.trimmed() } ?? ""
        return token.isEmpty ? nil : token
    }

    /// Runs `body`; a client error is printed (the problem's title and detail) and ends
    /// the command with its documented exit code.
    func perform(_ body: (APIClient) throws(ClientError) -> Void) throws {
        do { try body(client) } catch {
            printError("procrefd: \(error)")
            throw ExitCode(error.exitCode)
        }
    }

    /// One request whose answer is printed: its JSON with --json, else `text` of it.
    func request(_ method: String, _ path: String, json body: Any? = nil, text: (APIClient.Response) -> String) throws {
        try perform { client throws(ClientError) in
            let response = try client.call(method, path, json: body)
            show(response) { text(response) }
        }
    }

    /// Prints an answer: its JSON as the API sent it, or `text`.
    func show(_ response: APIClient.Response, text: () -> String) {
        if json { print(response.text.hasSuffix("\n") ? String(response.text.dropLast()) : response.text) } else { print(text()) }
    }
}

/// Durations on the command line: `500ms`, `30s`, `10m`, `2h`, or plain seconds.
struct TimeSpan: ExpressibleByArgument {
    let milliseconds: Int64

    init?(argument: String) {
        let units: [(String, Double)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, factor) in units where argument.hasSuffix(suffix) {
            guard let value = Double(argument.dropLast(suffix.count)), let ms = Self.milliseconds(value * factor) else { return nil }
            milliseconds = ms
            return
        }
        guard let seconds = Double(argument), let ms = Self.milliseconds(seconds * 1_000) else { return nil }
        milliseconds = ms
    }

    /// Whole milliseconds, nil for a negative, infinite or NaN span, or one past 100 years
    /// (the daemon refuses far less; this keeps the conversion from trapping).
    private static func milliseconds(_ value: Double) -> Int64? {
        guard value.isFinite, value >= 0, value <= 100 * 365 * 86_400_000 else { return nil }
        return Int64(value)
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// A plain text table: a header row, then one row per item, columns padded to fit.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    return ([header] + rows).map { row in
        row.enumerated().map { $1.padded(to: widths[$0]) }.joined(separator: "  ")
            .trimmed()
    }.joined(separator: "\n")
}

/// A JSON value as a table cell: `-` for null or absent.
func cell(_ value: Any?) -> String {
    switch value {
    case nil: return "-"
    case let string as String: return terminalSafe(string)
    default: return terminalSafe("\(value!)")
    }
}

/// `text` with its control characters (C0, DEL, C1) shown as `\u{1B}`: a holder label or
/// any other text a caller chose must not move the cursor, recolour or retitle a terminal.
func terminalSafe(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: isControl) else { return text }
    var safe = ""
    for scalar in text.unicodeScalars {
        if isControl(scalar) { safe += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}" } else { safe.unicodeScalars.append(scalar) }
    }
    return safe
}

private func isControl(_ scalar: Unicode.Scalar) -> Bool {
    scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
}
