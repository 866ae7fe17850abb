// WeightManifest.swift: every tensor a config implies, in the released spelling, with its
// shape and role. Used to generate models and to describe checkpoints.

/// What a tensor is for, which decides how a generator initialises it.
public enum TensorRole: Sendable, Equatable {
    /// A projection `[out, in]`.
    case matrix
    /// An RMSNorm weight.
    case normWeight
    /// Hyper-connection fn / base / scale.
    case hcFn, hcBase, hcScale
    /// Attention sink logits.
    case sink
    /// Compressor position bias.
    case ape
    /// Router selection bias.
    case routerBias
    /// Hash routing table (I64 expert ids).
    case hashTable
}

/// How DeepSeek's released checkpoints store a tensor (the released model.safetensors.index.json and dtypes).
public enum ReleasedFormat: Sendable, Equatable {
    /// BF16, or F32 for hc_*, ape, attn_sink, gate.bias; I64 for tid2eid.
    case dense
    /// F8_E4M3 with an F8_E8M0 scale per 128×128 tile.
    case fp8
    /// E2M1 packed two per I8 byte with an F8_E8M0 scale per 32 inputs (routed experts).
    case fp4
}

/// One tensor of the manifest.
public struct ManifestEntry: Sendable {
    public let name: String
    public let shape: [Int]
    public let role: TensorRole
    /// The format the release stores it in.
    public let releasedFormat: ReleasedFormat
    /// Routed expert tensors (counted once per token only for active experts).
    public let routedExpert: Bool
    public var elementCount: Int { shape.reduce(1, *) }
}

extension DeepSeekV4Config {
    /// All tensors of the main model in DeepSeek's released spelling.
    public func weightManifest() -> [ManifestEntry] {
        let D = hiddenSize, N = hcMult, d = headDim, H = headCount, I = moeIntermediateSize, E = routedExpertCount
        var out: [ManifestEntry] = []
        func add(_ names: [String], _ shape: [Int], _ role: TensorRole, routed: Bool = false, _ format: ReleasedFormat = .dense) {
            out.append(ManifestEntry(name: names[0], shape: shape, role: role, releasedFormat: format, routedExpert: routed))
        }
        add(WeightNames.embed, [vocabSize, D], .matrix)
        for l in 0..<layerCount {
            for block in ["attn", "ffn"] {
                add(WeightNames.hc(l, block, "fn"), [hcMixCount, N * D], .hcFn)
                add(WeightNames.hc(l, block, "base"), [hcMixCount], .hcBase)
                add(WeightNames.hc(l, block, "scale"), [3], .hcScale)
            }
            add(WeightNames.attnNorm(l), [D], .normWeight)
            add(WeightNames.ffnNorm(l), [D], .normWeight)
            add(WeightNames.attn(l, "wq_a.weight"), [qLoraRank, D], .matrix, .fp8)
            add(WeightNames.attn(l, "q_norm.weight"), [qLoraRank], .normWeight)
            add(WeightNames.attn(l, "wq_b.weight"), [H * d, qLoraRank], .matrix, .fp8)
            add(WeightNames.attn(l, "wkv.weight"), [d, D], .matrix, .fp8)
            add(WeightNames.attn(l, "kv_norm.weight"), [d], .normWeight)
            add(WeightNames.attn(l, "wo_a.weight"), [outputGroups * outputLoraRank, H * d / outputGroups], .matrix, .fp8)
            add(WeightNames.attn(l, "wo_b.weight"), [D, outputGroups * outputLoraRank], .matrix, .fp8)
            add(WeightNames.attn(l, "attn_sink"), [H], .sink)
            func compressor(indexer: Bool, c: Int, m: Int, overlap: Bool) {
                let width = overlap ? 2 * c : c
                add(WeightNames.compressor(l, indexer: indexer, "wkv.weight"), [width, D], .matrix)
                add(WeightNames.compressor(l, indexer: indexer, "wgate.weight"), [width, D], .matrix)
                add(WeightNames.compressor(l, indexer: indexer, "ape"), [m, width], .ape)
                add(WeightNames.compressor(l, indexer: indexer, "norm.weight"), [c], .normWeight)
            }
            switch attentionKinds[l] {
            case .sliding: break
            case .hca: compressor(indexer: false, c: d, m: hcaRatio, overlap: false)
            case .csa:
                compressor(indexer: false, c: d, m: csaRatio, overlap: true)
                compressor(indexer: true, c: indexHeadDim, m: csaRatio, overlap: true)
                add(WeightNames.indexerQB(l), [indexHeadCount * indexHeadDim, qLoraRank], .matrix, .fp8)
                add(WeightNames.indexerWeightsProj(l), [indexHeadCount, D], .matrix)
            }
            add(WeightNames.gate(l), [E, D], .matrix)
            switch routingKinds[l] {
            case .score: add(WeightNames.gateBias(l), [E], .routerBias)
            case .hash: add(WeightNames.tid2eid(l), [vocabSize, expertsPerToken], .hashTable)
            }
            for e in 0..<E {
                add([WeightNames.expert(l, e, "w1")], [I, D], .matrix, routed: true, .fp4)
                add([WeightNames.expert(l, e, "w2")], [D, I], .matrix, routed: true, .fp4)
                add([WeightNames.expert(l, e, "w3")], [I, D], .matrix, routed: true, .fp4)
            }
            if sharedExpertCount > 0 {
                add(WeightNames.shared(l, "w1"), [I, D], .matrix, .fp8)
                add(WeightNames.shared(l, "w2"), [D, I], .matrix, .fp8)
                add(WeightNames.shared(l, "w3"), [I, D], .matrix, .fp8)
            }
        }
        add(WeightNames.hcHeadFn, [N, N * D], .hcFn)
        add(WeightNames.hcHeadBase, [N], .hcBase)
        add(WeightNames.hcHeadScale, [1], .hcScale)
        add(WeightNames.norm, [D], .normWeight)
        add(WeightNames.head, [vocabSize, D], .matrix)
        return out
    }

    /// Parameters in total and active per token (routed experts: only `expertsPerToken`).
    public var parameterCounts: (total: Int, activePerToken: Int) {
        var total = 0
        var routed = 0
        for e in weightManifest() {
            total += e.elementCount
            if e.routedExpert { routed += e.elementCount }
        }
        let active = total - routed + routed / routedExpertCount * expertsPerToken
        return (total, active)
    }
}
