import ArgumentParser
import Foundation
import Lifecycle

/// Where client commands send their requests, and how they print answers.
struct ClientOptions: ParsableArguments {
    @OptionGroup var location: StateLocation

    @Option(help: "Talk to procrefd over TCP at http://HOST:PORT instead of its Unix socket (changes need --token).")
    var url: String?

    @Option(help: "Bearer token for --url (default: $PROCREFD_TOKEN).")
    var token: String?

    @Flag(help: "Print the API's JSON instead of text.")
    var json = false

    func validate() throws {
        if let url, HTTPTarget(url) == nil { throw ValidationError("--url must look like http://HOST:PORT, got \(url)") }
    }

    var client: APIClient {
        if let url, let target = HTTPTarget(url) {
            return APIClient(endpoint: .tcp(host: target.host, port: target.port),
                             token: token ?? ProcessInfo.processInfo.environment["PROCREFD_TOKEN"])
        }
        return APIClient(endpoint: .unix(path: location.directory.socket), token: nil)
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
            guard let value = Double(argument.dropLast(suffix.count)), value >= 0 else { return nil }
            milliseconds = Int64(value * factor)
            return
        }
        guard let seconds = Double(argument), seconds >= 0 else { return nil }
        milliseconds = Int64(seconds * 1_000)
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// A plain text table: a header row, then one row per item, columns padded to fit.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    return ([header] + rows).map { row in
        row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
            .trimmingCharacters(in: .whitespaces)
    }.joined(separator: "\n")
}

/// A JSON value as a table cell: `-` for null or absent.
func cell(_ value: Any?) -> String {
    switch value {
    case nil, is NSNull: return "-"
    case let string as String: return string
    case let number as NSNumber: return number.stringValue
    default: return "\(value!)"
    }
}
