// DeepSeekV4Model+Traffic.swift: how many weight bytes one token streams and how many
// matrix FLOPs it costs; the denominators of the decode and prefill rooflines.
import Tensors

/// Per-token weight traffic and matrix work of a model.
public struct WeightTraffic: Sendable {
    /// Bytes of weights a decode token reads (each active matrix once with its block scales,
    /// one embedding row, the routed experts it uses on average: `expertsPerToken` per layer).
    public var activeBytesPerToken: Int
    /// The routed experts' part of `activeBytesPerToken` (their average share).
    public var routedBytesPerToken: Int
    /// Multiply-adds ×2 of every matrix a token goes through (no attention scores), the output
    /// head included.
    public var matrixFlopsPerToken: Int
    /// The output head's part of `matrixFlopsPerToken` (mHC head mix and vocabulary projection):
    /// a prefill that wants only the last row's logits computes it once, not per token.
    public var headFlopsPerToken: Int
    /// Bytes of all weights.
    public var totalBytes: Int
}

extension DeepSeekV4Model {
    public var weightTraffic: WeightTraffic {
        var bytes = 0
        var flops = 0
        var routed = 0
        func add(_ m: WeightMatrix, share: Double = 1) {
            bytes += Int(Double(m.readBytes) * share)
            flops += Int(Double(2 * m.rows * m.cols) * share)
        }
        for (l, lw) in weights.layers.enumerated() {
            let a = lw.attention
            for m in [lw.attentionHC.fn, lw.ffnHC.fn, a.wqA, a.wqB, a.wkv, a.woA, a.woB, lw.moe.gate] { add(m) }
            if let c = a.compressor { add(c.wkv); add(c.wgate) }
            if let i = a.indexer { add(i.wqB); add(i.weightsProj); add(i.compressor.wkv); add(i.compressor.wgate) }
            if let s = lw.moe.shared { add(s.w1); add(s.w2); add(s.w3) }
            let experts = weights.experts[l]
            let share = Double(config.expertsPerToken) / Double(max(experts.count, 1))
            let before = bytes
            for e in experts {
                add(e.w1, share: share)
                add(e.w2, share: share)
                add(e.w3, share: share)
            }
            routed += bytes - before
        }
        let body = flops
        add(weights.hcHeadFn)
        add(weights.head)
        bytes += weights.embed.byteCount / weights.embed.rows
        return WeightTraffic(
            activeBytesPerToken: bytes, routedBytesPerToken: routed, matrixFlopsPerToken: flops, headFlopsPerToken: flops - body,
            totalBytes: store.files.reduce(0) { $0 + $1.fileSize })
    }
}
