import Posix
import Testing

/// The one parser of a holder's replies, against the texts of procref_holder_protocol.h.
@Suite("Holder protocol")
struct HolderProtocolTests {
    @Test("replies parse to what they say; anything else is unexpected")
    func replies() {
        #expect(HolderProtocol.Reply("acquired") == .acquired)
        #expect(HolderProtocol.Reply("released") == .released)
        #expect(HolderProtocol.Reply("error client 3") == .error(what: "client", errno: 3))
        #expect(HolderProtocol.Reply("error semop x") == .unexpected("error semop x"))
        #expect(HolderProtocol.Reply("acquired ") == .unexpected("acquired "))
        #expect(HolderProtocol.Reply("") == .unexpected(""))
    }

    @Test("the command and the release line end in a newline; the pool flag is what the holder shows")
    func lines() {
        #expect(HolderProtocol.command(semaphoreID: 7, ttlMs: nil, clientPID: 42) == Array("7 0 42\n".utf8))
        #expect(HolderProtocol.releaseLine == Array("release\n".utf8))
        #expect(HolderProtocol.poolFlag == "--pool")
    }
}
