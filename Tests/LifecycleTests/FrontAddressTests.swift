import Glibc
import Testing
import Wire

@testable import Lifecycle

@Suite("Front addresses")
struct FrontAddressTests {
    @Test("HOST:PORT with a numeric host, [V6]:PORT and unix:/PATH parse and print back the same", arguments: [
        "127.0.0.1:6379", "0.0.0.0:0", "[::1]:8080", "unix:/run/procrefd/cache.sock",
    ])
    func roundTrip(text: String) throws {
        let address = try #require(FrontAddress(text))
        #expect(address.description == text)
    }

    @Test("anything else is not an address", arguments: [
        "localhost:80", "::1:80", "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:-1", "unix:relative.sock", "unix:", "[127.0.0.1]:80", "",
    ])
    func rejected(text: String) {
        #expect(FrontAddress(text) == nil)
    }

    @Test("a definition's front needs an upstream that differs, no slots, no duplicates, and a pending bound in range")
    func definitionRules() {
        func problem(_ change: (inout ServiceDefinition) -> Void) -> String? {
            var definition = ServiceDefinition(start: ["redis-server"])
            definition.front = ["127.0.0.1:7001"]
            definition.upstream = "127.0.0.1:7002"
            change(&definition)
            do throws(DefinitionError) { try definition.validate() } catch { return error.field }
            return nil
        }
        #expect(problem { _ in } == nil)
        #expect(problem { $0.upstream = nil } == "upstream")
        #expect(problem { $0.upstream = "127.0.0.1:7001" } == "front")
        #expect(problem { $0.front = [] } == "front")
        #expect(problem { $0.front = ["127.0.0.1:7001", "127.0.0.1:7001"] } == "front")
        #expect(problem { $0.slots = 2 } == "front")
        #expect(problem { $0.frontMaxPending = 0 } == "front_max_pending")
        #expect(problem { $0.front = nil; $0.upstream = nil; $0.frontMaxPending = 10 } == "front_max_pending")
        #expect(problem { $0.front = nil } == "upstream")
    }
}
