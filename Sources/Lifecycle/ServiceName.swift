/// Names of services: `^[a-z0-9][a-z0-9._-]{0,62}$`.
public enum ServiceName {
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func lowerOrDigit(_ b: UInt8) -> Bool { (b >= 97 && b <= 122) || (b >= 48 && b <= 57) }
        return lowerOrDigit(bytes[0]) && bytes.dropFirst().allSatisfy { lowerOrDigit($0) || $0 == 46 || $0 == 95 || $0 == 45 }
    }
}
