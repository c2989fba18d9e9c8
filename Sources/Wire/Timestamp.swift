import FoundationEssentials
import Glibc

/// UTC RFC 3339 timestamps with milliseconds: sortable as text.
public enum Timestamp {
    /// `2026-11-22T03:12:00.250Z`. Written by hand: Foundation's ISO 8601 format style costs
    /// tens of µs a call, and every commit writes several. The digits go into one fixed
    /// buffer: string interpolation allocated a string per field.
    public static func format(_ date: Date) -> String {
        render(date, local: false) ?? fallback(date)
    }

    /// `2026-11-22 04:12:00.250` in the local time zone (TZ, else /etc/localtime), for people
    /// reading a table; the UTC form for a year outside 0...9999.
    public static func formatLocal(_ date: Date) -> String {
        render(date, local: true) ?? format(date)
    }

    /// The digits of `date` in UTC (`T` between date and time, `Z` after) or local time (a
    /// space, no zone); nil for a year outside 0...9999.
    private static func render(_ date: Date, local: Bool) -> String? {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let millis = Int32(min(999, max(0, (interval - Double(seconds)) * 1000)))
        var parts = tm()
        guard (local ? localtime_r(&seconds, &parts) : gmtime_r(&seconds, &parts)) != nil else { return nil }
        let year = parts.tm_year + 1900
        guard (0...9999).contains(year) else { return nil }
        return String(unsafeUninitializedCapacity: 24) { buffer in
            func put(_ value: Int32, digits: Int, at offset: Int) {
                var rest = value
                for index in stride(from: offset + digits - 1, through: offset, by: -1) {
                    buffer[index] = UInt8(48 + rest % 10)
                    rest /= 10
                }
            }
            put(year, digits: 4, at: 0)
            buffer[4] = UInt8(ascii: "-")
            put(parts.tm_mon + 1, digits: 2, at: 5)
            buffer[7] = UInt8(ascii: "-")
            put(parts.tm_mday, digits: 2, at: 8)
            buffer[10] = local ? UInt8(ascii: " ") : UInt8(ascii: "T")
            put(parts.tm_hour, digits: 2, at: 11)
            buffer[13] = UInt8(ascii: ":")
            put(parts.tm_min, digits: 2, at: 14)
            buffer[16] = UInt8(ascii: ":")
            put(parts.tm_sec, digits: 2, at: 17)
            buffer[19] = UInt8(ascii: ".")
            put(millis, digits: 3, at: 20)
            if local { return 23 }
            buffer[23] = UInt8(ascii: "Z")
            return 24
        }
    }

    /// Years outside 0...9999 (a clock far off): Foundation's format.
    private static func fallback(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func parse(_ text: String) -> Date? {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
        return try? Date.ISO8601FormatStyle().parse(text)
    }
}
