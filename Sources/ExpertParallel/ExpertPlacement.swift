// ExpertPlacement.swift: which rank owns each routed expert of each layer. Contiguous by
// default (rank r owns experts [r·E/K, (r+1)·E/K)); `--expert-placement FILE` reads a JSON map.
import Checkpoint
import Foundation

/// Expert → rank, per layer. A pure value: every rank builds the same one.
public struct ExpertPlacement: Sendable, Equatable {
    /// Number of ranks the experts are spread over.
    public let rankCount: Int
    /// `[layer][expert]` → owning rank.
    public let owner: [[Int]]

    /// Rank r owns the contiguous block [r·E/K, (r+1)·E/K) of every layer's E experts.
    public static func contiguous(expertCounts: [Int], rankCount k: Int) -> ExpertPlacement {
        precondition(k > 0)
        return ExpertPlacement(rankCount: k, owner: expertCounts.map { e in (0..<e).map { $0 * k / max(e, 1) } })
    }

    public init(rankCount: Int, owner: [[Int]]) {
        self.rankCount = rankCount
        self.owner = owner
    }

    /// Reads a placement file: `{"expert_rank": [r, r, …]}` (one rank per expert, the same for
    /// every layer) or `{"expert_rank": [[r, …], …]}` (one list per layer).
    /// - Throws: `ExpertParallelError.placement` naming the file and the first problem.
    public static func load(path: String, expertCounts: [Int], rankCount k: Int) throws -> ExpertPlacement {
        func bad(_ reason: String) -> ExpertParallelError { .placement(path: path, reason: reason) }
        guard let data = FileManager.default.contents(atPath: path) else { throw bad("cannot read the file") }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let list = object["expert_rank"] as? [Any] else {
            throw bad("expected a JSON object with an \"expert_rank\" array")
        }
        func ranks(_ any: Any, layer: Int) throws -> [Int] {
            guard let xs = any as? [Any] else { throw bad("expert_rank[\(layer)] is not an array") }
            let e = expertCounts[layer]
            guard xs.count == e else { throw bad("layer \(layer) lists \(xs.count) experts; the model has \(e)") }
            return try xs.enumerated().map { i, v in
                guard let n = JSONNumber.integer(v), n >= 0, n < k else {
                    throw bad("layer \(layer) expert \(i): \(v) is not a rank in 0..<\(k)")
                }
                return n
            }
        }
        let perLayer = list.first is [Any]
        if perLayer {
            guard list.count == expertCounts.count else { throw bad("\(list.count) layers listed; the model has \(expertCounts.count)") }
            return ExpertPlacement(rankCount: k, owner: try list.indices.map { try ranks(list[$0], layer: $0) })
        }
        return ExpertPlacement(rankCount: k, owner: try expertCounts.indices.map { try ranks(list, layer: $0) })
    }

    /// The experts of `layer` that `rank` owns, ascending.
    public func experts(layer: Int, rank: Int) -> [Int] { owner[layer].indices.filter { owner[layer][$0] == rank } }

    /// A 64-bit digest (FNV-1a) for the startup comparison between ranks.
    public var digest: UInt64 {
        var h = FNV1a()
        h.add(UInt64(rankCount))
        for layer in owner {
            h.add(UInt64(layer.count))
            for r in layer { h.add(UInt64(r)) }
        }
        return h.value
    }
}

/// FNV-1a, 64-bit: a stable digest (Swift's Hasher is seeded per process).
public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func add(_ bytes: some Sequence<UInt8>) {
        for b in bytes {
            value ^= UInt64(b)
            value = value &* 0x0000_0100_0000_01b3
        }
    }

    public mutating func add(_ x: UInt64) { withUnsafeBytes(of: x.littleEndian) { add($0) } }

    public mutating func add(_ s: String) {
        add(UInt64(s.utf8.count))
        add(s.utf8)
    }
}
