import Foundation
import Testing
import Wire

/// The hand-written text formats against Foundation's: same text for every input tried.
@Suite("Wire text formats")
struct WireTextTests {
    @Test("JSONText.quoted reads back as the same string through JSONSerialization")
    func quotedRoundTrips() throws {
        let samples = [
            "", "l_0000019ab3c4d5e6f7a8b9c0", "plain ascii", "quote \" inside", "back\\slash", "new\nline\r\ttab",
            "\u{01}\u{1f}control", "ünïcødé ✓ 🚀", "\u{7f}del", "mixed \" ü \n 🚀 \\",
        ]
        for sample in samples {
            let text = JSONText.quoted(sample)
            let decoded = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) as? String
            #expect(decoded == sample, "\(text.debugDescription)")
        }
        #expect(JSONText.quoted("abc") == "\"abc\"")
        #expect(JSONText.quoted("a\u{1}") == "\"a\\u0001\"")
    }

    @Test("Timestamp.formatLocal writes what a DateFormatter in the local time zone writes")
    func localTimeMatchesFoundation() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
        formatter.timeZone = .current
        // Fractions exact in binary: both then agree on the milliseconds (DateFormatter rounds,
        // Timestamp truncates, as its UTC form always has).
        for milliseconds: Int64 in [0, 250, 951_782_400_500, 1_795_651_089_125, 4_102_444_799_750] {
            let date = Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000)
            #expect(Timestamp.formatLocal(date) == formatter.string(from: date), "\(milliseconds)")
        }
    }

    @Test("trimmed and padded do what Foundation's trimmingCharacters and padding do (padded keeps a longer text whole)")
    func textEditsMatchFoundation() {
        let samples = ["", "  ", "abc", "  a b  ", "\tx\t", " \n x \r\n", "ünï ✓ ", "\u{00A0}nbsp\u{2003}", "\n\nline\n"]
        for sample in samples {
            #expect(sample.trimmed() == sample.trimmingCharacters(in: .whitespaces), "\(sample.debugDescription)")
            #expect(sample.trimmed(newlines: true) == sample.trimmingCharacters(in: .whitespacesAndNewlines), "\(sample.debugDescription)")
            #expect(sample.dropFirst(0).trimmed() == sample.trimmed(), "a Substring as its String")
        }
        for (text, width) in [("", 3), ("ab", 5), ("abc", 3), ("ünï", 6)] {
            #expect(text.padded(to: width) == text.padding(toLength: width, withPad: " ", startingAt: 0))
        }
        #expect("toolong".padded(to: 3) == "toolong")
    }

    @Test("Timestamp.format writes what Foundation's ISO 8601 style writes, and parses back")
    func timestampMatchesFoundation() {
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var generator = SystemRandomNumberGenerator()
        let fixed: [TimeInterval] = [0, 0.999, 951_782_400.5, 1_795_651_089.266, 4_102_444_799.001]
        let random = (0..<200).map { _ in TimeInterval(Int64.random(in: 0...4_102_444_799_000, using: &generator)) / 1000 }
        for seconds in fixed + random {
            let date = Date(timeIntervalSince1970: seconds)
            let text = Timestamp.format(date)
            #expect(text.utf8.count == 24)
            // Milliseconds are truncated: the text is at most 1 ms (plus float error) earlier.
            #expect(Timestamp.parse(text).map { abs($0.timeIntervalSince(date)) < 0.0011 } == true, "\(text)")
            // Foundation rounds the milliseconds where procrefd truncates: compare at whole ms.
            let whole = Date(timeIntervalSince1970: (seconds * 1000).rounded(.down) / 1000 + 0.0001)
            #expect(Timestamp.format(whole) == whole.formatted(style), "\(seconds)")
        }
    }
}
