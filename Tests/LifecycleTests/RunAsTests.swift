import Posix
import Wire
import Testing
@testable import Lifecycle

/// The run-as part of a definition without processes: parsing, checks, and a cap no
/// hierarchy can hold.
@Suite("Run-as definitions")
struct RunAsDefinitionTests {
    @Test("memory_max takes bytes or K/M/G; umask is octal up to 777; rlimits have known names")
    func parsing() {
        #expect(RunAs.bytes("512M") == 512 << 20)
        #expect(RunAs.bytes("2g") == 2 << 30)
        #expect(RunAs.bytes("4096") == 4096)
        #expect(RunAs.bytes("12Q") == nil)
        #expect(RunAs.bytes("99999999999G") == nil)
        var runAs = RunAs()
        for (umask, valid) in [("027", true), ("0027", true), ("777", true), ("1777", false), ("+27", false), ("8", false), ("", false)] {
            runAs.umask = umask
            #expect(((try? runAs.validate()) != nil) == valid, "umask \(umask)")
        }
        runAs.umask = nil
        runAs.rlimits = ["nofile": 10, "core": 0]
        #expect(runAs.resourceLimits.map(\.resource) == [4, 7])
        runAs.rlimits = ["files": 1]
        #expect(throws: DefinitionError(field: "rlimits.files", message: "one of as, core, cpu, fsize, memlock, nofile, nproc, stack")) {
            try runAs.validate()
        }
    }

    @Test("a cap with no controller in cgroup v2 or v1 refuses the start, naming the cap")
    func capWithoutController() {
        var runAs = RunAs()
        runAs.pidsMax = 10
        let caps = ServiceCaps(scope: "1.2", service: "x", v2Parent: nil, controllers: CgroupControllers(v1: [:]))
        #expect(throws: RunAsError.self) { _ = try caps.prepare(runAs) }
        do { _ = try caps.prepare(runAs) } catch { #expect(error.description == "pids_max: no pids controller in cgroup v2 or v1 here") }
        #expect((try? caps.prepare(RunAs())) == [])
    }
}

