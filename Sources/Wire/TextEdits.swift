// Foundation's text edits that FoundationEssentials lacks, for the few places that need them.

extension StringProtocol {
    /// The text without its leading and trailing blanks (spaces, tabs); with `newlines`,
    /// line breaks too. Foundation's `trimmingCharacters(in:)`.
    public func trimmed(newlines: Bool = false) -> String {
        let blank = { (character: Character) in character.isWhitespace && (newlines || !character.isNewline) }
        guard let first = firstIndex(where: { !blank($0) }), let last = lastIndex(where: { !blank($0) }) else { return "" }
        return String(self[first...last])
    }

    /// The text followed by spaces up to `width` characters (a longer text stays whole), for
    /// columns. Foundation's `padding(toLength:withPad:startingAt:)` cuts a longer text.
    public func padded(to width: Int) -> String {
        String(self) + String(repeating: " ", count: Swift.max(0, width - count))
    }
}
