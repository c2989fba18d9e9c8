@testable import ControlAPI
import Foundation
import Lifecycle
import Testing

/// The acquire body read without Foundation's decoder must mean exactly what the decoder
/// reads, and leave everything else to it.
@Suite("Plain acquire bodies")
struct PlainBodyTests {
    static func decoded(_ text: String) -> AcquireRequest? {
        try? JSONDecoder().decode(AcquireBody.self, from: Data(text.utf8)).request
    }

    static func plain(_ text: String) throws -> AcquireRequest? {
        AcquireBody.plain(try StrictJSON.check(Array(text.utf8)))?.request
    }

    @Test("a body of known members of their kind reads the same as through the decoder", arguments: [
        #"{}"#,
        #"{"ttl_ms":30000}"#,
        #"{"holder":"job-17","ttl_ms":5000,"client_pid":4242,"wait_ms":250}"#,
        #" { "wait_ms" : 0 , "holder" : "" } "#,
        #"{"ttl_ms":-1}"#,
        #"{"ttl_ms":9223372036854775807}"#,
    ])
    func sameAsDecoder(_ text: String) throws {
        let plain = try Self.plain(text)
        #expect(plain != nil)
        #expect(plain == Self.decoded(text))
    }

    @Test("anything else is left to the decoder, which names what is wrong", arguments: [
        #"{"holder":"caf\u00e9"}"#,  // an escape
        #"{"holder":"café"}"#,  // not ASCII
        #"{"ttl_ms":"5000"}"#,  // a string for an integer
        #"{"ttl_ms":1.5}"#,
        #"{"ttl_ms":1e3}"#,
        #"{"ttl_ms":92233720368547758070}"#,  // past 64 bits
        #"{"client_pid":4294967296}"#,  // past Int32
        #"{"holder":["a"]}"#,
        #"{"holder":true}"#,
        #"{"ttl":5000}"#,  // unknown member
        #"[1]"#,
    ])
    func leftToDecoder(_ text: String) throws {
        #expect(try Self.plain(text) == nil)
    }

    @Test("keys are compared after their escapes are decoded", arguments: [
        #"{"ttl_ms":1,"\u0074tl_ms":2}"#, #"{"a\"b":1,"a\u0022b":2}"#, #"{"\ud83d\ude00":1,"😀":2}"#, #"{"a\/b":1,"a/b":2}"#,
    ])
    func escapedDuplicates(_ text: String) {
        #expect(throws: StrictJSON.Failure.self) { try StrictJSON.check(Array(text.utf8)) }
    }

    @Test("escaped keys that differ are distinct, and a bad \\u escape is refused")
    func escapedDistinct() throws {
        #expect(try StrictJSON.check(Array(#"{"a\u0062":1,"ab2":2,"\n":3,"n":4}"#.utf8)).members?.keys.sorted() == ["\n", "ab", "ab2", "n"])
        #expect(throws: StrictJSON.Failure.self) { try StrictJSON.check(Array(#"{"\u00zz":1}"#.utf8)) }
    }
}
