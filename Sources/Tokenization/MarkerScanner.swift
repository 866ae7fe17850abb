// MarkerScanner.swift: finds one marker (`</think>`, `<｜DSML｜`, …) in a stream of Unicode
// scalars, holding back a partial match, the way deepseek-recipe's tag scanner does.

/// Scans a scalar stream for one marker and releases the text around it.
///
/// A proper prefix of the marker is held back until it is decided. When it turns out not to
/// be the marker it is released as text; if the scalar that broke it is a newline, that newline
/// is released with it (it belongs to the broken match, so it is never dropped later).
/// With `dropsNewlinesBefore`, newlines are held back too and dropped when the marker follows
/// them (`reasoning\n\n</think>` → `reasoning`).
struct MarkerScanner: Sendable {
    enum Event: Equatable, Sendable {
        case text(String)
        case marker
    }

    let marker: [Unicode.Scalar]
    let dropsNewlinesBefore: Bool
    /// Newlines held back (only with `dropsNewlinesBefore`).
    private var pendingNewlines = 0
    /// Length of the held-back prefix of `marker`.
    private var matched = 0

    init(_ marker: String, dropsNewlinesBefore: Bool) {
        self.marker = Array(marker.unicodeScalars)
        self.dropsNewlinesBefore = dropsNewlinesBefore
    }

    /// Whether nothing is held back.
    var isIdle: Bool { pendingNewlines == 0 && matched == 0 }

    /// Feeds one scalar; appends what it releases to `events`.
    mutating func feed(_ c: Unicode.Scalar, into events: inout [Event]) {
        if matched > 0 {
            if marker[matched] == c {
                matched += 1
                if matched == marker.count {
                    matched = 0
                    pendingNewlines = 0
                    events.append(.marker)
                }
                return
            }
            var t = held()
            if c == "\n" {
                t.unicodeScalars.append(c)
                events.append(.text(t))
                return
            }
            events.append(.text(t))
        }
        if marker[0] == c {
            matched = 1
        } else if c == "\n" && dropsNewlinesBefore {
            pendingNewlines += 1
        } else {
            var t = String(repeating: "\n", count: pendingNewlines)
            pendingNewlines = 0
            t.unicodeScalars.append(c)
            events.append(.text(t))
        }
    }

    /// Releases everything held back (end of the stream or of the stage).
    mutating func flush() -> String { held() }

    private mutating func held() -> String {
        var t = String(repeating: "\n", count: pendingNewlines)
        t.unicodeScalars.append(contentsOf: marker[..<matched])
        pendingNewlines = 0
        matched = 0
        return t
    }
}
