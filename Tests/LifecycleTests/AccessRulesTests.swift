import Glibc
import Lifecycle
import Posix
import Testing
import Wire

@Suite("Access rules")
struct AccessRulesTests {
    @Test("subjects name users, groups and everyone of this host; an unknown one is refused with its field")
    func subjects() throws {
        let nobody = try #require(Accounts.user("nobody"))
        let nogroup = try #require(Accounts.group("nogroup"))
        #expect(AccessSubject("*") == .everyone)
        #expect(AccessSubject("nobody") == .user(nobody.uid))
        #expect(AccessSubject(String(nobody.uid)) == .user(nobody.uid))
        #expect(AccessSubject("group:nogroup") == .group(nogroup))
        #expect(AccessSubject("no-such-user-x") == nil)
        #expect(AccessSubject("group:no-such-group-x") == nil)
        #expect(throws: DefinitionError.self) { try AccessSubject.parse(["nobody", "no-such-user-x"], field: "access.readers") }
    }

    @Test("the highest listed role wins; root and procrefd's own uid are always admin; nobody listed has none")
    func roles() throws {
        let nobody = try #require(Accounts.user("nobody"))
        let nogroup = try #require(Accounts.group("nogroup"))
        let rules = AccessRules(operators: [.group(nogroup)], readers: [.everyone])
        #expect(rules.role(uid: 0, groups: []) == .admin)
        #expect(rules.role(uid: geteuid(), groups: []) == .admin)
        #expect(rules.role(uid: nobody.uid, groups: [nogroup]) == .operator)
        #expect(rules.role(uid: nobody.uid, groups: []) == .reader)
        #expect(AccessRules(readers: [.user(nobody.uid)]).role(uid: nobody.uid &+ 1, groups: []) == nil)
        #expect(Role.admin > Role.operator && Role.operator > Role.leaser && Role.leaser > Role.reader)
    }
}
