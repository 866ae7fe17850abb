// JSONNumber.swift: strict reading of numbers from JSONSerialization output, where JSON
// true/false also arrive as NSNumber.
import Foundation

public enum JSONNumber {
    /// True for JSON true/false.
    public static func isBool(_ v: Any?) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return String(cString: n.objCType) == "c"
    }

    /// The value as an exact integer, or nil (booleans, fractions, huge values, non-numbers).
    public static func integer(_ v: Any?) -> Int? {
        guard let n = v as? NSNumber, !isBool(v) else { return nil }
        let d = n.doubleValue
        guard d == d.rounded(), abs(d) < 9.0e15 else { return nil }
        return n.intValue
    }

    /// The value as a number, or nil (booleans, non-numbers).
    public static func double(_ v: Any?) -> Double? {
        guard let n = v as? NSNumber, !isBool(v) else { return nil }
        return n.doubleValue
    }
}
