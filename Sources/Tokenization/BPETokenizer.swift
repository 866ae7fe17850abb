// BPETokenizer.swift: byte-level BPE from a Hugging Face tokenizer.json (V4's: no
// normalizer, the V4 pre-tokenizer, ByteLevel without its own regex), with added/special
// tokens matched literally first (leftmost-longest), like `tokenizers`'
// `encode(text, add_special_tokens=False)`; and decoding.
import Foundation

/// Errors from loading a tokenizer.
public struct TokenizerError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { message }
}

public final class BPETokenizer: @unchecked Sendable {
    /// Token id → token string (byte-level alphabet for BPE tokens, literal for added ones).
    public let tokens: [String]
    /// Ids of added tokens (special or not), by content.
    public let addedTokens: [String: Int]
    /// Ids of special added tokens.
    public let specialTokenIds: Set<Int>
    public var vocabularySize: Int { tokens.count }

    private let vocab: [String: Int]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]
    /// Byte → id of its single-byte token.
    private let byteTokens: [Int32]
    /// Token id → the bytes it stands for.
    private let tokenBytes: [[UInt8]]
    /// Added tokens by first UTF-8 byte, longest first.
    private let addedByFirstByte: [[(bytes: [UInt8], id: Int)]]
    /// Keyed by bytes: Swift String equality is canonical equivalence (U+2000 == U+2002).
    private var cache: [[UInt8]: [Int32]] = [:]
    private let cacheLock = NSLock()

    /// Loads `tokenizer.json` from a model folder or a file path.
    public convenience init(path: String) throws {
        var file = path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            file = (path as NSString).appendingPathComponent("tokenizer.json")
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw TokenizerError(message: "cannot read \(file)")
        }
        try self.init(json: data, source: file)
    }

    public init(json data: Data, source: String = "tokenizer.json") throws {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TokenizerError(message: "\(source): not a JSON object")
        }
        guard let model = root["model"] as? [String: Any], (model["type"] as? String) == "BPE",
            let vocabObj = model["vocab"] as? [String: Any], let mergesObj = model["merges"] as? [Any]
        else { throw TokenizerError(message: "\(source): model must be BPE with vocab and merges") }
        if let norm = root["normalizer"] as? [String: Any] {
            let inner = norm["normalizers"] as? [Any] ?? []
            guard (norm["type"] as? String) == "Sequence" && inner.isEmpty else {
                throw TokenizerError(message: "\(source): normalizers are not supported (V4 has none)")
            }
        }
        try PreTokenizer.validate(root["pre_tokenizer"], source: source)
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(vocabObj.count + 2000)
        var maxID = -1
        for (k, v) in vocabObj {
            guard let id = (v as? NSNumber)?.intValue else { throw TokenizerError(message: "\(source): bad id for '\(k)'") }
            vocab[k] = id
            maxID = max(maxID, id)
        }
        var added: [String: Int] = [:]
        var special: Set<Int> = []
        for a in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let content = a["content"] as? String, let id = (a["id"] as? NSNumber)?.intValue else { continue }
            added[content] = id
            if a["special"] as? Bool == true { special.insert(id) }
            maxID = max(maxID, id)
        }
        var tokens = [String](repeating: "", count: maxID + 1)
        for (k, id) in vocab { tokens[id] = k }
        for (k, id) in added { tokens[id] = k }

        // Byte-level alphabet (GPT-2): printable bytes map to themselves, others to 256+n.
        var byteToChar = [Character](repeating: " ", count: 256)
        var charToByte: [Character: UInt8] = [:]
        var n = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            let scalar = printable ? Unicode.Scalar(UInt32(b))! : Unicode.Scalar(UInt32(256 + n))!
            if !printable { n += 1 }
            byteToChar[b] = Character(scalar)
            charToByte[Character(scalar)] = UInt8(b)
        }
        var byteTokens = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            guard let id = vocab[String(byteToChar[b])] else { throw TokenizerError(message: "\(source): byte \(b) has no token") }
            byteTokens[b] = Int32(id)
        }
        var tokenBytes = [[UInt8]](repeating: [], count: tokens.count)
        for (id, t) in tokens.enumerated() {
            if added[t] == id {
                tokenBytes[id] = Array(t.utf8)
            } else {
                tokenBytes[id] = t.map { charToByte[$0] ?? 0x3F }
            }
        }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergesObj.count)
        for (rank, m) in mergesObj.enumerated() {
            let pair: (String, String)
            if let s = m as? String {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError(message: "\(source): bad merge '\(s)'") }
                pair = (String(parts[0]), String(parts[1]))
            } else if let a = m as? [String], a.count == 2 {
                pair = (a[0], a[1])
            } else {
                throw TokenizerError(message: "\(source): bad merge at \(rank)")
            }
            guard let l = vocab[pair.0], let r = vocab[pair.1], let merged = vocab[pair.0 + pair.1] else { continue }
            merges[UInt64(l) << 32 | UInt64(r)] = UInt64(rank) << 32 | UInt64(merged)
        }
        var byFirst = [[(bytes: [UInt8], id: Int)]](repeating: [], count: 256)
        for (content, id) in added where !content.isEmpty {
            let b = Array(content.utf8)
            byFirst[Int(b[0])].append((b, id))
        }
        for i in 0..<256 { byFirst[i].sort { $0.bytes.count > $1.bytes.count } }

        self.tokens = tokens
        self.vocab = vocab
        addedTokens = added
        specialTokenIds = special
        self.merges = merges
        self.byteTokens = byteTokens
        self.tokenBytes = tokenBytes
        addedByFirstByte = byFirst
    }

    /// The id of a token string (added tokens included).
    public func id(of token: String) -> Int? { addedTokens[token] ?? vocab[token] }

    // MARK: - Encoding

    /// Token ids of `text`, with added tokens recognised literally (no BOS/EOS added).
    public func encode(_ text: String) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(text.utf8.count / 3)
        let bytes = Array(text.utf8)
        var segmentStart = 0
        var i = 0
        while i < bytes.count {
            var matched: (len: Int, id: Int)?
            for cand in addedByFirstByte[Int(bytes[i])] where cand.bytes.count <= bytes.count - i {
                var ok = true
                for j in 1..<cand.bytes.count where bytes[i + j] != cand.bytes[j] {
                    ok = false
                    break
                }
                if ok {
                    matched = (cand.bytes.count, cand.id)
                    break
                }
            }
            if let m = matched {
                encodeOrdinary(bytes[segmentStart..<i], into: &out)
                out.append(m.id)
                i += m.len
                segmentStart = i
            } else {
                i += 1
            }
        }
        encodeOrdinary(bytes[segmentStart..<bytes.count], into: &out)
        return out
    }

    /// Text without added tokens: pre-tokenize, then BPE each piece.
    private func encodeOrdinary(_ bytes: ArraySlice<UInt8>, into out: inout [Int]) {
        guard !bytes.isEmpty else { return }
        let s = String(decoding: bytes, as: UTF8.self)
        let scalars = Array(s.unicodeScalars)
        let classes = scalars.map(ScalarClass.init)
        for piece in PreTokenizer.split(scalars, classes) {
            var utf8: [UInt8] = []
            for sc in scalars[piece] { utf8.append(contentsOf: UTF8.encode(sc)!) }
            encodePiece(utf8, into: &out)
        }
    }

    private func encodePiece(_ utf8: [UInt8], into out: inout [Int]) {
        if utf8.count == 1 {
            out.append(Int(byteTokens[Int(utf8[0])]))
            return
        }
        cacheLock.lock()
        let hit = cache[utf8]
        cacheLock.unlock()
        if let hit {
            for t in hit { out.append(Int(t)) }
            return
        }
        let ids = bpe(utf8.map { byteTokens[Int($0)] })
        if utf8.count < 256 {
            cacheLock.lock()
            if cache.count > 200_000 { cache.removeAll(keepingCapacity: true) }
            cache[utf8] = ids
            cacheLock.unlock()
        }
        for t in ids { out.append(Int(t)) }
    }

    /// Merges the lowest-ranked adjacent pair until none is mergeable.
    private func bpe(_ start: [Int32]) -> [Int32] {
        var ids = start
        if ids.count < 2 { return ids }
        // Short words: simple rescans; long ones: same, but over a doubly linked list.
        var next = Array(1...ids.count)
        var prev = Array(-1..<(ids.count - 1))
        var alive = ids.count
        while alive > 1 {
            var bestRank = UInt64.max
            var bestPos = -1
            var bestID: Int32 = 0
            var i = 0
            while i != -1 && i < ids.count {
                let j = next[i]
                if j >= ids.count { break }
                if let m = merges[UInt64(UInt32(bitPattern: ids[i])) << 32 | UInt64(UInt32(bitPattern: ids[j]))] {
                    let rank = m >> 32
                    if rank < bestRank {
                        bestRank = rank
                        bestPos = i
                        bestID = Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)
                    }
                }
                i = j
            }
            if bestPos < 0 { break }
            let j = next[bestPos]
            ids[bestPos] = bestID
            next[bestPos] = next[j]
            if next[j] < ids.count { prev[next[j]] = bestPos }
            alive -= 1
        }
        var out: [Int32] = []
        out.reserveCapacity(alive)
        var i = 0
        while i < ids.count {
            out.append(ids[i])
            i = next[i]
        }
        return out
    }

    // MARK: - Decoding

    /// The bytes a token stands for (UTF-8 of its text; may be part of a character).
    public func bytes(of id: Int) -> [UInt8] { id >= 0 && id < tokenBytes.count ? tokenBytes[id] : [] }

    /// Text of `ids` (invalid UTF-8 replaced by U+FFFD, as `tokenizers` does).
    public func decode(_ ids: [Int]) -> String {
        var b: [UInt8] = []
        for id in ids { b.append(contentsOf: bytes(of: id)) }
        return String(decoding: b, as: UTF8.self)
    }
}

/// Turns a stream of token ids into text without ever splitting a UTF-8 character.
public struct IncrementalDecoder: Sendable {
    private var pending: [UInt8] = []

    public init() {}

    /// Text completed by `id` (possibly empty while a character is incomplete).
    public mutating func push(_ id: Int, tokenizer: BPETokenizer) -> String {
        pending.append(contentsOf: tokenizer.bytes(of: id))
        let complete = Self.completePrefix(pending)
        guard complete > 0 else { return "" }
        let text = String(decoding: pending[0..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// What is left at the end (an incomplete character becomes U+FFFD).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a UTF-8 sequence.
    static func completePrefix(_ b: [UInt8]) -> Int {
        var i = b.count
        // Walk back over at most 3 continuation bytes to the last lead byte.
        var back = 0
        while back < 4 && i > 0 {
            let c = b[i - 1]
            if c & 0xC0 == 0x80 {
                i -= 1
                back += 1
                continue
            }
            let need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1
            // The sequence starting at i-1 has `back + 1` bytes so far.
            return back + 1 >= need ? b.count : i - 1
        }
        return b.count  // only continuation bytes: invalid anyway, emit
    }
}
