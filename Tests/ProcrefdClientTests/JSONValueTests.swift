import Foundation
import ProcrefdClient
import Testing

/// The CLI's JSON (JSONValue, through JSONEncoder and JSONDecoder) against Foundation's
/// JSONSerialization, which it replaces.
@Suite("JSONValue")
struct JSONValueTests {
    @Test("parsing gives what JSONSerialization gives: integers as Int, fractions as Double, nested objects and arrays")
    func parse() throws {
        let text = #"{"count":2,"ratio":0.5,"name":"db ✓","ok":true,"list":[1,"two",false],"inner":{"pid":42},"gone":null}"#
        let object = try #require(try JSONValue.parse(Array(text.utf8)).any as? [String: Any])
        #expect(object["count"] as? Int == 2)
        #expect(object["ratio"] as? Double == 0.5)
        #expect(object["name"] as? String == "db ✓")
        #expect(object["ok"] as? Bool == true)
        #expect((object["inner"] as? [String: Any])?["pid"] as? Int == 42)
        let list = try #require(object["list"] as? [Any])
        #expect(list[0] as? Int == 1 && list[1] as? String == "two" && list[2] as? Bool == false)
        #expect(object["gone"] == nil, "null members are left out")
    }

    @Test("encoding reads back through JSONSerialization as the same document; pretty output sorts keys")
    func encode() throws {
        let body: [String: Any] = ["client_pid": Int32(4242), "ttl_ms": Int64(60_000), "holder": "run: a/b", "wait": 1.5, "keep": false,
                                   "env": ["A": "1"], "args": ["x", 2]]
        let bytes = try JSONValue.encode(body)
        // Field by field: on Linux a Swift dictionary literal does not bridge to an NSDictionary
        // whose numbers compare equal to JSONSerialization's.
        let back = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(back.count == body.count)
        #expect(back["client_pid"] as? Int == 4242)
        #expect(back["ttl_ms"] as? Int == 60_000)
        #expect(back["holder"] as? String == "run: a/b")
        #expect(back["wait"] as? Double == 1.5)
        #expect(back["keep"] as? Bool == false)
        #expect((back["env"] as? [String: Any])?["A"] as? String == "1")
        let args = try #require(back["args"] as? [Any])
        #expect(args.count == 2 && args[0] as? String == "x" && args[1] as? Int == 2)
        #expect(String(decoding: bytes, as: UTF8.self).contains("run: a/b"), "slashes are not escaped")
        let pretty = String(decoding: try JSONValue.encode(["b": 1, "a": 2], pretty: true), as: UTF8.self)
        #expect(pretty.firstRange(of: "\"a\"")!.lowerBound < pretty.firstRange(of: "\"b\"")!.lowerBound)
    }

    @Test("a value JSON has no form for is an error, not a crash")
    func unencodable() {
        #expect(throws: EncodingError.self) { try JSONValue.encode(["when": Date()]) }
        #expect(throws: EncodingError.self) { try JSONValue.encode(["big": UInt64.max]) }
    }
}
