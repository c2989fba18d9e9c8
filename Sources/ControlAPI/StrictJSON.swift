/// A strict look at a request body before it is decoded (RFC 8259 with no leniency):
/// Foundation's decoders accept a trailing comma and let one of two duplicate keys win.
/// Also: no request field takes `null` (the contract declares none nullable), so a null is
/// refused here, naming its path; and numbers with a fraction or exponent are remembered,
/// so that a decoder's "not valid JSON" for `1000.5` can name the field that wanted an
/// integer.
struct StrictJSON {
    enum Failure: Error, Equatable {
        /// Not JSON as RFC 8259 writes it: why, and at which byte.
        case syntax(String, at: Int)
        /// A JSON null at this path.
        case null(path: String)
    }

    /// Paths of numbers that are not integers (`1.5`, `1e3`).
    private(set) var fractionalNumbers: [String] = []

    /// A member of the top-level object, as far as it is plain enough to take as it stands.
    enum Member: Equatable {
        /// An ASCII string without escapes: its bytes are its value.
        case string(String)
        /// An integer that fits 64 bits.
        case integer(Int64)
        /// Anything else (the decoder reads it, and names what is wrong).
        case other
    }

    /// The members of the top-level object (nil for any other value).
    private(set) var members: [String: Member]?

    private let bytes: [UInt8]
    private var index = 0
    private static let maxDepth = 32

    /// Checks `bytes`; returns what it noted of the numbers.
    static func check(_ bytes: [UInt8]) throws(Failure) -> StrictJSON {
        var parser = StrictJSON(bytes: bytes)
        parser.skipSpace()
        try parser.value(path: "", depth: 0)
        parser.skipSpace()
        guard parser.index == bytes.count else { throw .syntax("unexpected data after the JSON value", at: parser.index) }
        return parser
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipSpace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0a || byte == 0x0d { index += 1 }
    }

    private mutating func expect(_ literal: String) throws(Failure) {
        for byte in literal.utf8 {
            guard current == byte else { throw .syntax("expected \(literal)", at: index) }
            index += 1
        }
    }

    private mutating func value(path: String, depth: Int) throws(Failure) {
        guard depth <= Self.maxDepth else { throw .syntax("nested deeper than \(Self.maxDepth)", at: index) }
        switch current {
        case UInt8(ascii: "{"): try object(path: path, depth: depth)
        case UInt8(ascii: "["): try array(path: path, depth: depth)
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "t"): try expect("true")
        case UInt8(ascii: "f"): try expect("false")
        case UInt8(ascii: "n"):
            try expect("null")
            throw .null(path: path.isEmpty ? "body" : path)
        case .some(let byte) where byte == UInt8(ascii: "-") || (byte >= 0x30 && byte <= 0x39): try number(path: path)
        default: throw .syntax("expected a value", at: index)
        }
    }

    private mutating func object(path: String, depth: Int) throws(Failure) {
        if depth == 0 { members = [:] }
        index += 1
        skipSpace()
        if current == UInt8(ascii: "}") { index += 1; return }
        var keys: Set<String> = []
        while true {
            guard current == UInt8(ascii: "\"") else {
                throw .syntax(keys.isEmpty ? "expected a key" : "trailing comma (or a key that is not a string)", at: index)
            }
            let key = try string()
            guard keys.insert(key).inserted else { throw .syntax("duplicate key \"\(key)\"", at: index) }
            skipSpace()
            try expect(":")
            skipSpace()
            let start = index
            try value(path: path.isEmpty ? key : "\(path).\(key)", depth: depth + 1)
            if depth == 0 { members?[key] = Self.member(bytes[start..<index]) }
            skipSpace()
            if current == UInt8(ascii: "}") { index += 1; return }
            try expect(",")
            skipSpace()
        }
    }

    private mutating func array(path: String, depth: Int) throws(Failure) {
        index += 1
        skipSpace()
        if current == UInt8(ascii: "]") { index += 1; return }
        var position = 0
        while true {
            guard current != UInt8(ascii: "]") else { throw .syntax("trailing comma", at: index) }
            try value(path: "\(path)[\(position)]", depth: depth + 1)
            position += 1
            skipSpace()
            if current == UInt8(ascii: "]") { index += 1; return }
            try expect(",")
            skipSpace()
        }
    }

    /// A string's value, escapes decoded: keys are compared as the decoder will see them,
    /// so `"\u0074tl_ms"` is a duplicate of `"ttl_ms"`.
    private mutating func string() throws(Failure) -> String {
        let start = index
        index += 1
        var escaped = false
        var sawEscape = false
        while let byte = current {
            index += 1
            if escaped {
                guard "\"\\/bfnrtu".utf8.contains(byte) else { throw .syntax("invalid escape", at: index - 1) }
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
                sawEscape = true
            } else if byte == UInt8(ascii: "\"") {
                let raw = bytes[(start + 1)..<(index - 1)]
                return sawEscape ? try Self.unescape(raw, at: start + 1) : String(decoding: raw, as: UTF8.self)
            } else if byte < 0x20 {
                throw .syntax("control character in a string", at: index - 1)
            }
        }
        throw .syntax("unterminated string", at: start)
    }

    /// Decodes the escapes of a string's bytes (already checked to be valid escape letters).
    private static func unescape(_ raw: ArraySlice<UInt8>, at offset: Int) throws(Failure) -> String {
        var scalars = String.UnicodeScalarView()
        var utf8: [UInt8] = []
        func flush() {
            scalars.append(contentsOf: String(decoding: utf8, as: UTF8.self).unicodeScalars)
            utf8.removeAll()
        }
        var position = raw.startIndex
        func hex4() throws(Failure) -> UInt32 {
            guard position + 4 <= raw.endIndex, let value = UInt32(String(decoding: raw[position..<(position + 4)], as: UTF8.self), radix: 16) else {
                throw .syntax("invalid \\u escape", at: offset + position - raw.startIndex)
            }
            position += 4
            return value
        }
        while position < raw.endIndex {
            let byte = raw[position]
            position += 1
            guard byte == UInt8(ascii: "\\") else { utf8.append(byte); continue }
            let letter = raw[position]
            position += 1
            flush()
            switch letter {
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = try hex4()
                // A surrogate pair: \uD83D\uDE00.
                if (0xD800...0xDBFF).contains(code), position + 6 <= raw.endIndex, raw[position] == UInt8(ascii: "\\"),
                    raw[position + 1] == UInt8(ascii: "u")
                {
                    position += 2
                    let low = try hex4()
                    code = 0x10000 + ((code - 0xD800) << 10) + (low &- 0xDC00)
                }
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default: scalars.append(Unicode.Scalar(letter))  // " \ /
            }
        }
        flush()
        return String(scalars)
    }

    private mutating func number(path: String) throws(Failure) {
        let start = index
        if current == UInt8(ascii: "-") { index += 1 }
        guard let first = current, first >= 0x30 && first <= 0x39 else { throw .syntax("invalid number", at: start) }
        index += 1
        if first != 0x30 { skipDigits() }
        var integral = true
        if current == UInt8(ascii: ".") {
            index += 1
            guard skipDigits() > 0 else { throw .syntax("invalid number", at: start) }
            integral = false
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard skipDigits() > 0 else { throw .syntax("invalid number", at: start) }
            integral = false
        }
        if !integral { fractionalNumbers.append(path.isEmpty ? "body" : path) }
    }

    /// What a checked value's bytes hold, when it is plain.
    private static func member(_ value: ArraySlice<UInt8>) -> Member {
        if value.first == UInt8(ascii: "\"") {
            let inner = value.dropFirst().dropLast()
            guard inner.allSatisfy({ $0 < 0x80 && $0 != UInt8(ascii: "\\") }) else { return .other }
            return .string(String(decoding: inner, as: UTF8.self))
        }
        guard value.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }),
            let number = Int64(String(decoding: value, as: UTF8.self))
        else { return .other }
        return .integer(number)
    }

    @discardableResult
    private mutating func skipDigits() -> Int {
        var count = 0
        while let byte = current, byte >= 0x30 && byte <= 0x39 {
            index += 1
            count += 1
        }
        return count
    }
}
