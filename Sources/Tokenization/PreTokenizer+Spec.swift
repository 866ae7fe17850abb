// PreTokenizer+Spec.swift: the `pre_tokenizer` section of tokenizer.json that PreTokenizer
// implements, and the check that a file asks for exactly that (anything else is refused, so a
// different tokenizer never silently gets V4's hand-compiled regexes).
import Foundation

extension PreTokenizer {
    /// V4's three `Split` regexes, in order, as tokenizer.json spells them.
    static let splitPatterns = [
        #"\p{N}{1,3}"#,
        "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
        ##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^"## + "\r\n"
            + ##"\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+["## + "\r\n" + ##"]*|\s*["## + "\r\n"
            + ##"]+|\s+(?!\S)|\s+"##,
    ]

    /// Checks that `section` (tokenizer.json's `pre_tokenizer`, as JSONSerialization reads it) is
    /// V4's: a `Sequence` of the three `Split` steps of `splitPatterns` (behavior `Isolated`, not
    /// inverted) and a `ByteLevel` step with `add_prefix_space` and `use_regex` off.
    ///
    /// - Throws: `TokenizerError` naming `source` and the first part that differs (its JSON path
    ///   and what was found), as this tokenizer implements no other pre-tokenizer.
    static func validate(_ section: Any?, source: String) throws {
        func refuse(_ path: String, _ what: String) -> TokenizerError {
            TokenizerError(
                message: "\(source): \(path): \(what) is not supported (only DeepSeek-V4's pre-tokenizer is implemented: "
                    + "three Split regexes and ByteLevel without its own regex)")
        }
        guard let root = section as? [String: Any] else {
            throw refuse("pre_tokenizer", section == nil || section is NSNull ? "a missing pre-tokenizer" : describe(section))
        }
        guard root["type"] as? String == "Sequence", let steps = root["pretokenizers"] as? [Any] else {
            throw refuse("pre_tokenizer.type", "\(describe(root["type"]))")
        }
        guard steps.count == splitPatterns.count + 1 else {
            throw refuse("pre_tokenizer.pretokenizers", "a sequence of \(steps.count) steps")
        }
        for (i, pattern) in splitPatterns.enumerated() {
            let path = "pre_tokenizer.pretokenizers[\(i)]"
            guard let step = steps[i] as? [String: Any], step["type"] as? String == "Split" else {
                throw refuse("\(path).type", describe((steps[i] as? [String: Any])?["type"]))
            }
            guard let regex = (step["pattern"] as? [String: Any])?["Regex"] as? String else {
                throw refuse("\(path).pattern", describe(step["pattern"]))
            }
            guard regex == pattern else { throw refuse("\(path).pattern.Regex", describe(regex)) }
            guard step["behavior"] as? String == "Isolated" else {
                throw refuse("\(path).behavior", describe(step["behavior"]))
            }
            guard step["invert"] as? Bool ?? false == false else { throw refuse("\(path).invert", "true") }
        }
        let path = "pre_tokenizer.pretokenizers[\(splitPatterns.count)]"
        guard let byteLevel = steps[splitPatterns.count] as? [String: Any], byteLevel["type"] as? String == "ByteLevel" else {
            throw refuse("\(path).type", describe((steps[splitPatterns.count] as? [String: Any])?["type"]))
        }
        for flag in ["add_prefix_space", "use_regex"] where byteLevel[flag] as? Bool ?? false {
            throw refuse("\(path).\(flag)", "true")
        }
    }

    /// A short rendering of a JSON value for an error message.
    private static func describe(_ value: Any?) -> String {
        switch value {
        case nil: "a missing value"
        case let s as String: "\"\(s.count > 80 ? String(s.prefix(80)) + "…" : s)\""
        case let n as NSNumber: "\(n)"
        case let v?: "\(type(of: v)) value"
        }
    }
}
