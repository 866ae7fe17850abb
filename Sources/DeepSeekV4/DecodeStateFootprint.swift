// DecodeStateFootprint.swift: how many bytes one sequence's decode state takes, from the config
// alone (what transformers' modeling_deepseek_v4.py's DeepseekV4HCACache / DeepseekV4CSACache keep): what grows with the context and what stays constant.
//
// Per token of context: a CSA layer stores one main entry (headDim) and one indexer key
// (indexHeadDim) every csaRatio tokens; an HCA layer one entry every hcaRatio tokens.
// Constant: each layer's sliding-window ring (window × headDim) and the compressor states
// (kv + score rows awaiting compression, always fp32, as in `SequenceState`).

/// Bytes of the decode state of one sequence.
public struct DecodeStateFootprint: Sendable, Equatable {
    /// Bytes per element of stored entries and window rings (4: fp32, 2: bf16).
    public let elementBytes: Int
    /// Bytes added per token of context (averaged over the compression ratios).
    public let bytesPerToken: Double
    /// Bytes that do not grow with the context.
    public let constantBytes: Int

    /// Bytes for a context of `tokens` tokens.
    public func bytes(tokens: Int) -> Double { Double(constantBytes) + bytesPerToken * Double(tokens) }

    /// The largest context that fits in `budget` bytes (0 when even the constant part does not).
    public func tokensFitting(bytes budget: Int) -> Int {
        guard budget > constantBytes, bytesPerToken > 0 else { return 0 }
        return Int(Double(budget - constantBytes) / bytesPerToken)
    }
}

extension DeepSeekV4Config {
    /// The decode-state footprint with entries and windows stored in `elementBytes`-byte
    /// elements (the engine stores fp32 today: 4; a bf16 cache would use 2).
    public func decodeStateFootprint(elementBytes: Int) -> DecodeStateFootprint {
        var perToken = 0.0
        var constant = 0
        let d = headDim, ihd = indexHeadDim
        for kind in attentionKinds {
            constant += slidingWindow * d * elementBytes
            switch kind {
            case .sliding:
                break
            case .csa:
                perToken += Double((d + ihd) * elementBytes) / Double(csaRatio)
                // Overlapping compressors: 2·ratio slots of width 2·entry, kv + score, fp32.
                constant += 2 * (2 * csaRatio) * (2 * d) * 4 + 2 * (2 * csaRatio) * (2 * ihd) * 4
            case .hca:
                perToken += Double(d * elementBytes) / Double(hcaRatio)
                constant += 2 * hcaRatio * d * 4
            }
        }
        return DecodeStateFootprint(elementBytes: elementBytes, bytesPerToken: perToken, constantBytes: constant)
    }
}
